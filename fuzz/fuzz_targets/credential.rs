#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dstore_core::fuzzing::parse_credential(data);
});
