#![no_main]
// See idemproxy::fuzzing::v3_authorization for the input shape and the invariants checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| idemproxy::fuzzing::v3_authorization(data));
