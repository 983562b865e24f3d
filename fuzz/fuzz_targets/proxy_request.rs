#![no_main]
// See idemproxy::fuzzing::proxy_request for the input shape and the invariants checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| idemproxy::fuzzing::proxy_request(data));
