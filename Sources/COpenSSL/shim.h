#ifndef CLOUDTRAILBEAT_COPENSSL_SHIM_H
#define CLOUDTRAILBEAT_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* SSL_set_tlsext_host_name is a macro that Swift cannot call. */
static inline long cloudtrailbeat_ssl_set_sni(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
/* SSL_CTX_set_min_proto_version is a macro too. */
static inline long cloudtrailbeat_ssl_ctx_min_tls12(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}
/* The passphrase callback of a context whose keys must not be encrypted: it supplies none, so loading
   an encrypted key fails instead of OpenSSL's default prompting on the terminal. */
static int cloudtrailbeat_no_passphrase(char *buf, int size, int rwflag, void *userdata) {
    (void)buf; (void)size; (void)rwflag; (void)userdata;
    return 0;
}
static inline void cloudtrailbeat_ssl_ctx_refuse_passphrases(SSL_CTX *ctx) {
    SSL_CTX_set_default_passwd_cb(ctx, cloudtrailbeat_no_passphrase);
}
#endif
