/*
 * dp_main.c - command line of sluice-dataplane.
 *
 * Start order: snapshot and usage state, then the sync link (which loads
 * the snapshot cache so the node can serve before the control plane
 * answers), then listeners and workers, then the port file. SIGTERM or
 * SIGINT: stop accepting, drain in-flight requests (up to
 * --drain-timeout), flush usage, send pending reports, exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp_metrics_labels.h"
#include "dp_reqlog.h"
#include "dp_server.h"
#include "dp_snapshot.h"
#include "dp_sync.h"
#include "dp_usage.h"
#include "sl_crypto.h"
#include "sl_err.h"
#include "sl_log.h"

#define MOD "main"
#define DEFAULT_MAX_REQUEST_BYTES ((size_t)4 << 20)
#define REPORT_FLUSH_TIMEOUT_MS 10000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice-dataplane --controlplane HOST:PORT --node-token-file F --listen HOST:PORT\n"
            "                        --admin-listen HOST:PORT [--threads N] [--node-id ID]\n"
            "                        [--snapshot-cache FILE] [--spool-dir DIR] [--drain-timeout SEC]\n"
            "                        [--port-file F] [--max-request-bytes N] [--request-log on|off]\n"
            "                        [--request-log-sample RATE] [--metrics-tenant-label]\n"
            "Each flag may also come from its SLUICE_* environment variable (SLUICE_CONTROLPLANE,\n"
            "SLUICE_NODE_TOKEN_FILE, SLUICE_LISTEN, SLUICE_ADMIN_LISTEN, SLUICE_THREADS, SLUICE_NODE_ID,\n"
            "SLUICE_SNAPSHOT_CACHE, SLUICE_SPOOL_DIR, SLUICE_DRAIN_TIMEOUT, SLUICE_MAX_REQUEST_BYTES,\n"
            "SLUICE_REQUEST_LOG, SLUICE_REQUEST_LOG_SAMPLE, SLUICE_METRICS_TENANT_LABEL=1).\n");
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Writes "API_PORT ADMIN_PORT\n" to path atomically (temp file + rename). */
static int write_port_file(const char *path, int api, int adm)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%d %d\n", api, adm);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        unlink(tmp);
        return -1;
    }
    fclose(f);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_CP = 1, O_TOKEN, O_LISTEN, O_ADMIN, O_THREADS, O_NODE, O_CACHE, O_SPOOL, O_DRAIN, O_PORTFILE, O_MAXREQ,
           O_REQLOG, O_REQLOG_SAMPLE, O_TENANT_LABEL, O_HELP };
    static const struct option options[] = {
        {"controlplane", required_argument, NULL, O_CP},
        {"node-token-file", required_argument, NULL, O_TOKEN},
        {"listen", required_argument, NULL, O_LISTEN},
        {"admin-listen", required_argument, NULL, O_ADMIN},
        {"threads", required_argument, NULL, O_THREADS},
        {"node-id", required_argument, NULL, O_NODE},
        {"snapshot-cache", required_argument, NULL, O_CACHE},
        {"spool-dir", required_argument, NULL, O_SPOOL},
        {"drain-timeout", required_argument, NULL, O_DRAIN},
        {"port-file", required_argument, NULL, O_PORTFILE},
        {"max-request-bytes", required_argument, NULL, O_MAXREQ},
        {"request-log", required_argument, NULL, O_REQLOG},
        {"request-log-sample", required_argument, NULL, O_REQLOG_SAMPLE},
        {"metrics-tenant-label", no_argument, NULL, O_TENANT_LABEL},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *controlplane = env_or("SLUICE_CONTROLPLANE", NULL);
    const char *token_file = env_or("SLUICE_NODE_TOKEN_FILE", NULL);
    const char *listen = env_or("SLUICE_LISTEN", NULL);
    const char *admin_listen = env_or("SLUICE_ADMIN_LISTEN", NULL);
    const char *threads_s = env_or("SLUICE_THREADS", NULL);
    const char *node_id = env_or("SLUICE_NODE_ID", NULL);
    const char *cache = env_or("SLUICE_SNAPSHOT_CACHE", NULL);
    const char *spool = env_or("SLUICE_SPOOL_DIR", NULL);
    const char *drain_s = env_or("SLUICE_DRAIN_TIMEOUT", "30");
    const char *maxreq_s = env_or("SLUICE_MAX_REQUEST_BYTES", NULL);
    const char *reqlog_s = env_or("SLUICE_REQUEST_LOG", "on");
    const char *sample_s = env_or("SLUICE_REQUEST_LOG_SAMPLE", "1");
    const char *tenant_label_s = env_or("SLUICE_METRICS_TENANT_LABEL", "0");
    const char *port_file = NULL;
    int opt;

    /* Requests free what they allocated within microseconds, so the heap
     * hovers around its peak: without these, glibc keeps trimming the top of
     * the workers' arenas and faulting the pages back in on the next
     * allocation (tests/bench: from 16 to 64 connections, page faults per
     * request grew tenfold and CPU per request by a quarter). Setting the
     * trim threshold also freezes the mmap threshold, which otherwise
     * drifts up and down with buffer sizes. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 4 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);

    sl_log_set_level(-1);
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case O_CP: controlplane = optarg; break;
        case O_TOKEN: token_file = optarg; break;
        case O_LISTEN: listen = optarg; break;
        case O_ADMIN: admin_listen = optarg; break;
        case O_THREADS: threads_s = optarg; break;
        case O_NODE: node_id = optarg; break;
        case O_CACHE: cache = optarg; break;
        case O_SPOOL: spool = optarg; break;
        case O_DRAIN: drain_s = optarg; break;
        case O_PORTFILE: port_file = optarg; break;
        case O_MAXREQ: maxreq_s = optarg; break;
        case O_REQLOG: reqlog_s = optarg; break;
        case O_REQLOG_SAMPLE: sample_s = optarg; break;
        case O_TENANT_LABEL: tenant_label_s = "1"; break;
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || controlplane == NULL || token_file == NULL || listen == NULL || admin_listen == NULL) {
        usage(stderr);
        return 2;
    }

    dp_server_config_t cfg = {.listen = listen, .admin_listen = admin_listen, .request_log = 1};
    long v;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg.threads = ncpu > 0 ? (int)ncpu : 1;
    if (threads_s != NULL) {
        if (parse_int(threads_s, 1, 256, &v) != 0) {
            fprintf(stderr, "sluice-dataplane: invalid --threads \"%s\"\n", threads_s);
            return 2;
        }
        cfg.threads = (int)v;
    }
    if (parse_int(drain_s, 0, 86400, &v) != 0) {
        fprintf(stderr, "sluice-dataplane: invalid --drain-timeout \"%s\"\n", drain_s);
        return 2;
    }
    cfg.drain_timeout_sec = (int)v;
    cfg.max_request_bytes = DEFAULT_MAX_REQUEST_BYTES;
    if (maxreq_s != NULL) {
        if (parse_int(maxreq_s, 1024, 1L << 30, &v) != 0) {
            fprintf(stderr, "sluice-dataplane: invalid --max-request-bytes \"%s\"\n", maxreq_s);
            return 2;
        }
        cfg.max_request_bytes = (size_t)v;
    }
    if (strcmp(reqlog_s, "on") == 0) {
        cfg.request_log = 1;
    } else if (strcmp(reqlog_s, "off") == 0) {
        cfg.request_log = 0;
    } else {
        fprintf(stderr, "sluice-dataplane: invalid --request-log \"%s\" (on or off)\n", reqlog_s);
        return 2;
    }
    double sample_rate;
    if (dp_reqlog_parse_rate(sample_s, &sample_rate) != 0) {
        fprintf(stderr, "sluice-dataplane: invalid --request-log-sample \"%s\" (a number from 0 to 1)\n", sample_s);
        return 2;
    }
    dp_mlabels_set_tenant_label(strcmp(tenant_label_s, "1") == 0 || strcmp(tenant_label_s, "on") == 0 ||
                                strcmp(tenant_label_s, "true") == 0);
    /* request lines are info level: a quieter SLUICE_LOG_LEVEL turns them off too */
    const char *lvl = getenv("SLUICE_LOG_LEVEL");
    if (lvl != NULL && (strcmp(lvl, "warn") == 0 || strcmp(lvl, "error") == 0))
        cfg.request_log = 0;

    char hostname[256];
    if (node_id == NULL) {
        if (gethostname(hostname, sizeof(hostname)) != 0)
            snprintf(hostname, sizeof(hostname), "dataplane");
        hostname[sizeof(hostname) - 1] = '\0';
        node_id = hostname;
    }
    cfg.node_id = node_id;

    sl_err_t err = {0};
    static char node_token[1024];
    if (sl_read_token_file(token_file, node_token, sizeof(node_token), &err) != 0) {
        sl_error(MOD, "could not read the node token: %s", err.msg);
        return 1;
    }
    uint8_t boot[16];
    char boot_id[33];
    if (sl_random(boot, sizeof(boot)) != 0) {
        sl_error(MOD, "could not generate a boot id");
        return 1;
    }
    sl_hex_encode(boot, sizeof(boot), boot_id);

    /* workers and the sync thread inherit this mask; the main thread takes
     * the signals with sigwait */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (dp_snapshot_init(cfg.threads) != 0 || dp_usage_init(cfg.threads) != 0 || dp_mlabels_init(cfg.threads) != 0 ||
        dp_reqlog_init(cfg.threads, sample_rate) != 0) {
        sl_error(MOD, "could not initialize the snapshot and usage state");
        return 1;
    }
    dp_sync_config_t scfg = {.controlplane = controlplane,
                             .node_token = node_token,
                             .node_id = node_id,
                             .boot_id = boot_id,
                             .snapshot_cache = cache,
                             .spool_dir = spool};
    if (dp_sync_start(&scfg, &err) != 0) {
        sl_error(MOD, "could not start the control plane link: %s", err.msg);
        return 1;
    }
    if (dp_server_start(&cfg, &err) != 0) {
        sl_error(MOD, "could not start the server: %s", err.msg);
        return 1;
    }
    if (port_file != NULL && write_port_file(port_file, dp_server_api_port(), dp_server_admin_port()) != 0) {
        sl_error(MOD, "could not write the port file \"%s\"", port_file);
        return 1;
    }
    sl_info(MOD, "serving on port %d (admin %d), %d workers, node \"%s\", boot %s", dp_server_api_port(),
            dp_server_admin_port(), cfg.threads, node_id, boot_id);

    int sig = 0;
    sigwait(&set, &sig);
    sl_info(MOD, "received %s: draining (up to %d s)", sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.drain_timeout_sec);
    dp_server_drain_and_stop();
    dp_sync_stop(REPORT_FLUSH_TIMEOUT_MS);
    sl_info(MOD, "stopped");
    return 0;
}
