"""The kit's Caffe build: the build script, its patches by purpose, the CUDA toolkit resolver, the unit-test runner."""
