#include <zlib.h>

/// deflateInit2/inflateInit2 are macros that Swift cannot import; these wrappers pass the version
/// and struct size the way the macros do.
static inline int czlib_deflate_init_gzip(z_streamp s, int level) {
    return deflateInit2(s, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
static inline int czlib_inflate_init_gzip(z_streamp s) {
    return inflateInit2(s, 15 + 32);  /* +32: accept gzip or zlib headers */
}
