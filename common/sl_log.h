/*
 * sl_log.h - the one logging function.
 *
 * Lines go to stderr as JSON objects: {"ts":..,"level":..,"module":..,"msg":..}.
 * Thread-safe (one write(2) per line). Never pass secrets or prompt content.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stddef.h>

typedef enum { SL_LOG_DEBUG = 0, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR } sl_log_level_t;

/* Lines below level are dropped. Reads SLUICE_LOG_LEVEL (debug, info, warn,
 * error) when called with -1. */
void sl_log_set_level(int level);

void sl_log(sl_log_level_t level, const char *module, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes one already-formed JSON object as a line (request logs). */
void sl_log_json_line(const char *json, size_t len);

#define sl_debug(mod, ...) sl_log(SL_LOG_DEBUG, mod, __VA_ARGS__)
#define sl_info(mod, ...) sl_log(SL_LOG_INFO, mod, __VA_ARGS__)
#define sl_warn(mod, ...) sl_log(SL_LOG_WARN, mod, __VA_ARGS__)
#define sl_error(mod, ...) sl_log(SL_LOG_ERROR, mod, __VA_ARGS__)

#endif
