// libFuzzer's entry point for one target of libFuzzTargets: built once per target with
// -DFUZZ_TARGET=ctb_fuzz_<name> (scripts/fuzz does it).
#include <stddef.h>
#include <stdint.h>

int FUZZ_TARGET(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return FUZZ_TARGET(data, size); }
