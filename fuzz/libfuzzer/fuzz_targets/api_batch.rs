#![no_main]
// The body is phalanx_fuzz::api_batch, also replayed over fuzz/corpus/api_batch by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::api_batch(data);
});
