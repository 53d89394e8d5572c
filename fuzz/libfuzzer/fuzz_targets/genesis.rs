#![no_main]
// The body is phalanx_fuzz::genesis, also replayed over fuzz/corpus/genesis by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::genesis(data);
});
