/*
 * main.c - command line of sluice-mockllm, fake LLM providers for tests.
 *
 *   sluice-mockllm --listen HOST:PORT --api-key KEY [--port-file F] [--threads N]
 *                  [--anthropic-key K] [--azure-key K]
 *                  [--aws-access-key-id ID] [--aws-secret-access-key S]
 *                  [--google-sa FILE] [--google-sa-public-key PEM]
 *                  [--google-client-email E] [--google-token-ttl SEC]
 *   sluice-mockllm --make-service-account FILE
 *
 * Every provider is served on the one port, routed by path. PORT 0 picks a
 * free port; --port-file then receives the bound port (decimal and a
 * newline), written to a temporary file and renamed into place once the
 * listeners accept connections. SIGTERM and SIGINT stop the server and exit
 * 0. --make-service-account writes a test service-account JSON and exits.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "google_auth.h"
#include "provider.h"
#include "server.h"

#define MAX_THREADS 64

/* Kept in a static so that whatever the stopped loops still own stays
 * reachable until exit. */
static mock_server_t *server;

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice-mockllm --listen HOST:PORT --api-key KEY [options]\n"
                 "       sluice-mockllm --make-service-account FILE\n"
                 "\n"
                 "Fake LLM providers (OpenAI, Azure OpenAI, Anthropic, AWS Bedrock, Google Vertex AI) for tests\n"
                 "and benchmarks, all on one port.\n"
                 "  --listen HOST:PORT            address to listen on; port 0 picks a free port\n"
                 "  --api-key KEY                 OpenAI key (\"Authorization: Bearer KEY\"); default of the\n"
                 "                                Anthropic and Azure keys\n"
                 "  --port-file FILE              write the bound port to FILE once listening\n"
                 "  --threads N                   event-loop threads (default 1)\n"
                 "  --anthropic-key KEY           Anthropic x-api-key (default: --api-key)\n"
                 "  --azure-key KEY               Azure OpenAI api-key (default: --api-key)\n"
                 "  --aws-access-key-id ID        Bedrock SigV4 access key id (default " MOCK_AWS_ACCESS_KEY_ID ")\n"
                 "  --aws-secret-access-key KEY   Bedrock SigV4 secret (default " MOCK_AWS_SECRET_ACCESS_KEY ")\n"
                 "  --google-sa FILE              service-account JSON whose key signs Vertex token requests\n"
                 "  --google-sa-public-key FILE   PEM public key of that account (instead of --google-sa)\n"
                 "  --google-client-email EMAIL   the account's client_email (with --google-sa-public-key)\n"
                 "  --google-token-ttl SEC        lifetime of issued access tokens (default 3600)\n"
                 "  --make-service-account FILE   write a test service-account JSON (RSA 2048) and exit\n");
}

/* Splits "host:port", "[v6addr]:port" or ":port" in place. */
static int split_listen(char *arg, const char **host, const char **port)
{
    char *colon = strrchr(arg, ':');

    if (colon == NULL)
        return -1;
    *colon = '\0';
    *port = colon + 1;
    if (arg[0] == '[') {
        size_t n = strlen(arg);
        if (n < 2 || arg[n - 1] != ']')
            return -1;
        arg[n - 1] = '\0';
        ++arg;
    }
    *host = arg[0] != '\0' ? arg : NULL;
    return 0;
}

static int write_port_file(const char *path, unsigned port)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    FILE *fp;
    int ok;

    if (tmp == NULL)
        return -1;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    if ((fp = fopen(tmp, "w")) == NULL) {
        free(tmp);
        return -1;
    }
    ok = fprintf(fp, "%u\n", port) > 0;
    ok = (fclose(fp) == 0) && ok;
    if (ok && rename(tmp, path) == 0) {
        free(tmp);
        return 0;
    }
    unlink(tmp);
    free(tmp);
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"listen", required_argument, NULL, 'l'},
        {"api-key", required_argument, NULL, 'k'},
        {"port-file", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'},
        {"anthropic-key", required_argument, NULL, 'A'},
        {"azure-key", required_argument, NULL, 'Z'},
        {"aws-access-key-id", required_argument, NULL, 'I'},
        {"aws-secret-access-key", required_argument, NULL, 'S'},
        {"google-sa", required_argument, NULL, 'G'},
        {"google-sa-public-key", required_argument, NULL, 'P'},
        {"google-client-email", required_argument, NULL, 'E'},
        {"google-token-ttl", required_argument, NULL, 'T'},
        {"make-service-account", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *listen_arg = NULL;
    const char *port_file = NULL, *host = NULL, *port = NULL;
    const char *make_sa = NULL;
    mock_settings_t settings = {
        .aws_access_key_id = MOCK_AWS_ACCESS_KEY_ID,
        .aws_secret_access_key = MOCK_AWS_SECRET_ACCESS_KEY,
        .google_token_ttl = MOCK_GOOGLE_TOKEN_TTL,
    };
    long threads = 1;
    char err[256];
    int opt;

    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'l':
            listen_arg = optarg;
            break;
        case 'k':
            settings.api_key = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 't': {
            char *end;
            threads = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || threads < 1 || threads > MAX_THREADS) {
                fprintf(stderr, "sluice-mockllm: --threads must be between 1 and %d\n", MAX_THREADS);
                return 2;
            }
            break;
        }
        case 'A':
            settings.anthropic_key = optarg;
            break;
        case 'Z':
            settings.azure_key = optarg;
            break;
        case 'I':
            settings.aws_access_key_id = optarg;
            break;
        case 'S':
            settings.aws_secret_access_key = optarg;
            break;
        case 'G':
            settings.google_sa_file = optarg;
            break;
        case 'P':
            settings.google_public_key_file = optarg;
            break;
        case 'E':
            settings.google_client_email = optarg;
            break;
        case 'T': {
            char *end;
            long ttl = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || ttl < 1 || ttl > 86400) {
                fprintf(stderr, "sluice-mockllm: --google-token-ttl must be between 1 and 86400\n");
                return 2;
            }
            settings.google_token_ttl = (uint32_t)ttl;
            break;
        }
        case 'M':
            make_sa = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (make_sa != NULL) {
        if (optind != argc) {
            usage(stderr);
            return 2;
        }
        if (mock_google_make_service_account(make_sa, err, sizeof(err)) != 0) {
            fprintf(stderr, "sluice-mockllm: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (optind != argc || listen_arg == NULL || settings.api_key == NULL || settings.api_key[0] == '\0') {
        usage(stderr);
        return 2;
    }
    if (split_listen(listen_arg, &host, &port) != 0) {
        fprintf(stderr, "sluice-mockllm: --listen expects HOST:PORT, got \"%s\"\n", listen_arg);
        return 2;
    }
    settings.api_key_len = strlen(settings.api_key);
    if (settings.anthropic_key == NULL || settings.anthropic_key[0] == '\0')
        settings.anthropic_key = settings.api_key;
    settings.anthropic_key_len = strlen(settings.anthropic_key);
    if (settings.azure_key == NULL || settings.azure_key[0] == '\0')
        settings.azure_key = settings.api_key;
    settings.azure_key_len = strlen(settings.azure_key);

    /* Workers inherit this mask; the main thread takes the signals with sigwait. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (mock_providers_init(&settings) != 0) {
        fprintf(stderr, "sluice-mockllm: provider initialisation failed\n");
        return 1;
    }
    if ((server = mock_server_create(&settings, host, port, (size_t)threads, err, sizeof(err))) == NULL) {
        fprintf(stderr, "sluice-mockllm: %s\n", err);
        return 1;
    }
    if (mock_server_start(server, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice-mockllm: %s\n", err);
        return 1;
    }
    unsigned bound = mock_server_port(server);
    if (port_file != NULL && write_port_file(port_file, bound) != 0) {
        fprintf(stderr, "sluice-mockllm: could not write port file \"%s\"\n", port_file);
        mock_server_stop(server);
        return 1;
    }
    fprintf(stderr, "sluice-mockllm: listening on %s:%u with %ld thread%s\n", host != NULL ? host : "*", bound, threads,
            threads == 1 ? "" : "s");

    int sig;
    while (sigwait(&stop_signals, &sig) != 0)
        ;
    mock_server_stop(server);
    fprintf(stderr, "sluice-mockllm: stopped by signal %d\n", sig);
    return 0;
}
