# The native addon built at npm install (node-gyp): native/deflate, the system libz's deflate for
# --compress's worker threads (see native/deflate/deflate.c). Built to build/Release/.
{
  "targets": [
    {
      "target_name": "sparsify_deflate",
      "sources": ["native/deflate/deflate.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-ldl"]
    }
  ]
}
