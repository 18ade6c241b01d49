#ifndef CLOUDTRAILBEAT_CCURL_SHIM_H
#define CLOUDTRAILBEAT_CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt are variadic, which Swift cannot call.
   Each shim below fixes the type of the third argument, so the compiler checks what the caller passes. */

typedef size_t (*cloudtrailbeat_curl_data_callback)(char *ptr, size_t size, size_t nmemb, void *userdata);
typedef int (*cloudtrailbeat_curl_socket_callback)(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
typedef int (*cloudtrailbeat_curl_timer_callback)(CURLM *multi, long timeout_ms, void *userp);
typedef int (*cloudtrailbeat_curl_xferinfo_callback)(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);

static inline CURLcode cloudtrailbeat_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode cloudtrailbeat_easy_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode cloudtrailbeat_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode cloudtrailbeat_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
/* A curl_blob option (CURLOPT_CAINFO_BLOB, CURLOPT_SSLCERT_BLOB, CURLOPT_SSLKEY_BLOB): libcurl copies the
   bytes (CURL_BLOB_COPY), so they need not outlive the call. */
static inline CURLcode cloudtrailbeat_easy_setopt_blob(CURL *handle, CURLoption option, const void *data, size_t length) {
    struct curl_blob blob;
    blob.data = (void *)data;
    blob.len = length;
    blob.flags = CURL_BLOB_COPY;
    return curl_easy_setopt(handle, option, &blob);
}
static inline CURLcode cloudtrailbeat_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode cloudtrailbeat_easy_setopt_data_callback(CURL *handle, CURLoption option, cloudtrailbeat_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode cloudtrailbeat_easy_setopt_xferinfo_callback(CURL *handle, CURLoption option, cloudtrailbeat_curl_xferinfo_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode cloudtrailbeat_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode cloudtrailbeat_easy_getinfo_off(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode cloudtrailbeat_easy_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode cloudtrailbeat_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLMcode cloudtrailbeat_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}
static inline CURLMcode cloudtrailbeat_multi_setopt_pointer(CURLM *handle, CURLMoption option, void *value) {
    return curl_multi_setopt(handle, option, value);
}
static inline CURLMcode cloudtrailbeat_multi_setopt_socket_callback(CURLM *handle, CURLMoption option, cloudtrailbeat_curl_socket_callback value) {
    return curl_multi_setopt(handle, option, value);
}
static inline CURLMcode cloudtrailbeat_multi_setopt_timer_callback(CURLM *handle, CURLMoption option, cloudtrailbeat_curl_timer_callback value) {
    return curl_multi_setopt(handle, option, value);
}
#endif
