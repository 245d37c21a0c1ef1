/* dp_price.c - usage pricing (see dp_price.h). */
#include "dp_price.h"

#include "sl_money.h"

int64_t dp_price_cost(const dp_model_t *m, const dp_tokens_t *t)
{
    if (m == NULL)
        return 0;
    int64_t cached = t->cached_input < 0 ? 0 : t->cached_input;
    int64_t input = t->input < cached ? cached : t->input;
    int64_t cached_price = m->cached_input_micro_per_mtok > 0 ? m->cached_input_micro_per_mtok
                                                               : m->input_micro_per_mtok;
    int64_t c = sl_cost_nano(input - cached, m->input_micro_per_mtok);
    c = sl_add_sat(c, sl_cost_nano(cached, cached_price));
    return sl_add_sat(c, sl_cost_nano(t->output, m->output_micro_per_mtok));
}

int64_t dp_price_estimate(const dp_model_t *m, int64_t input_tokens, int64_t output_tokens)
{
    if (m == NULL)
        return 0;
    return sl_add_sat(sl_cost_nano(input_tokens, m->input_micro_per_mtok),
                      sl_cost_nano(output_tokens, m->output_micro_per_mtok));
}
