/*
 * sparsify's deflate addon: one raw deflate stream per cluster into a caller-given buffer, with
 * the system's libz (the library qemu-img uses). Node-API, one z_stream per thread (the addon's
 * instance data: each worker thread has its own), reset after each cluster.
 *
 * Why libz is opened by hand rather than linked (-lz): node exports its own zlib's symbols
 * (deflate, deflateInit2_, ...; Chromium's fork, whose clusters come out ~3 % bigger). An addon
 * linked with -lz binds its calls, and libz's own internal calls, to those first (tried: the
 * process died of a segmentation fault in the first deflate). dlopen with
 * RTLD_DEEPBIND makes libz resolve its symbols in itself, and dlsym asks libz for them by name.
 * The header serves only for z_stream and the constants, the same in every zlib: whichever
 * <zlib.h> the build finds (node's or the system's) is fine, and the system's libz checks the
 * stream's size and its own version in deflateInit2_.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>
#include <zlib.h>

typedef const char *(*zlib_version_fn)(void);
typedef int (*deflate_init2_fn)(z_streamp, int, int, int, int, int, const char *, int);
typedef int (*deflate_fn)(z_streamp, int);
typedef int (*deflate_reset_fn)(z_streamp);
typedef int (*deflate_end_fn)(z_streamp);

/* libz's calls, looked up once per process (dlopen and dlsym are thread-safe). */
static struct {
  zlib_version_fn version;
  deflate_init2_fn init2;
  deflate_fn deflate;
  deflate_reset_fn reset;
  deflate_end_fn end;
} libz;

/* A thread's stream: started by open(), ended when its thread's environment goes away. */
typedef struct {
  z_stream strm;
  int ready;
} thread_stream;

static const char *load_libz(void) {
  if (libz.end != NULL) return NULL;
  void *lib = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (lib == NULL) return "cannot open libz.so.1";
  zlib_version_fn version = (zlib_version_fn)dlsym(lib, "zlibVersion");
  deflate_init2_fn init2 = (deflate_init2_fn)dlsym(lib, "deflateInit2_");
  deflate_fn deflate = (deflate_fn)dlsym(lib, "deflate");
  deflate_reset_fn reset = (deflate_reset_fn)dlsym(lib, "deflateReset");
  deflate_end_fn end = (deflate_end_fn)dlsym(lib, "deflateEnd");
  if (!version || !init2 || !deflate || !reset || !end) return "libz.so.1 lacks a deflate call";
  libz.version = version;
  libz.init2 = init2;
  libz.deflate = deflate;
  libz.reset = reset;
  libz.end = end; /* last: the others are set when another thread sees it */
  return NULL;
}

static void free_stream(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  thread_stream *s = data;
  if (s->ready) libz.end(&s->strm);
  free(s);
}

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

/* open(level, windowBits, memLevel): this thread's stream (windowBits < 0: raw deflate); returns libz's version. */
static napi_value open_stream(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t level, window_bits, mem_level;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3
      || napi_get_value_int32(env, argv[0], &level) != napi_ok
      || napi_get_value_int32(env, argv[1], &window_bits) != napi_ok
      || napi_get_value_int32(env, argv[2], &mem_level) != napi_ok)
    return throw_error(env, "open(level, windowBits, memLevel) takes three integers");
  const char *failure = load_libz();
  if (failure != NULL) return throw_error(env, failure);
  /* A second open() in the same thread starts its stream anew, with these settings. */
  thread_stream *s = NULL;
  if (napi_get_instance_data(env, (void **)&s) != napi_ok) return throw_error(env, "cannot read this thread's deflate stream");
  if (s == NULL) {
    s = calloc(1, sizeof *s);
    if (s == NULL) return throw_error(env, "out of memory");
    if (napi_set_instance_data(env, s, free_stream, NULL) != napi_ok) {
      free(s);
      return throw_error(env, "cannot keep the deflate stream");
    }
  }
  if (s->ready) libz.end(&s->strm);
  memset(&s->strm, 0, sizeof s->strm);
  s->ready = libz.init2(&s->strm, level, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY, libz.version(), (int)sizeof(z_stream)) == Z_OK;
  if (!s->ready) return throw_error(env, "deflateInit2 failed");
  napi_value version;
  napi_create_string_utf8(env, libz.version(), NAPI_AUTO_LENGTH, &version);
  return version;
}

/* The bytes of a Uint8Array (a Buffer is one). */
static int bytes_of(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  bool is_typed = false;
  if (napi_is_typedarray(env, value, &is_typed) == napi_ok && is_typed) {
    napi_typedarray_type type;
    size_t count, offset;
    napi_value buffer;
    void *at;
    if (napi_get_typedarray_info(env, value, &type, &count, &at, &buffer, &offset) != napi_ok || type != napi_uint8_array) return 0;
    *data = at;
    *length = count;
    return 1;
  }
  return 0;
}

/*
 * deflateInto(input, output, roomBytes): deflates all of `input` as one raw stream into the
 * start of `output`, with at most roomBytes of it; the compressed length, or -1 when the stream
 * did not end with room to spare (then the output is no smaller than roomBytes).
 */
static napi_value deflate_into(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *input, *output;
  size_t input_bytes, output_bytes;
  int64_t room;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3
      || !bytes_of(env, argv[0], &input, &input_bytes) || !bytes_of(env, argv[1], &output, &output_bytes)
      || napi_get_value_int64(env, argv[2], &room) != napi_ok || room < 0)
    return throw_error(env, "deflateInto(input, output, roomBytes) takes two Uint8Arrays and a length");
  thread_stream *s = NULL;
  if (napi_get_instance_data(env, (void **)&s) != napi_ok || s == NULL || !s->ready)
    return throw_error(env, "open() this thread's deflate stream first");
  if ((size_t)room > output_bytes) room = (int64_t)output_bytes;
  if (input_bytes > UINT32_MAX || room > UINT32_MAX) return throw_error(env, "deflateInto takes at most 4 GiB");
  s->strm.next_in = input;
  s->strm.avail_in = (uInt)input_bytes;
  s->strm.next_out = output;
  s->strm.avail_out = (uInt)room;
  int status = libz.deflate(&s->strm, Z_FINISH);
  uInt left = s->strm.avail_out;
  libz.reset(&s->strm);
  napi_value result;
  napi_create_int64(env, status == Z_STREAM_END && left > 0 ? room - (int64_t)left : -1, &result);
  return result;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor calls[] = {
    {"open", NULL, open_stream, NULL, NULL, NULL, napi_enumerable, NULL},
    {"deflateInto", NULL, deflate_into, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof calls / sizeof calls[0], calls) != napi_ok) return NULL;
  return exports;
}
