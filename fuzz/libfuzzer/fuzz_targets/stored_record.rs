#![no_main]
// The body is phalanx_fuzz::stored_record, also replayed over fuzz/corpus/stored_record by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::stored_record(data);
});
