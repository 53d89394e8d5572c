#![no_main]
// The body is phalanx_fuzz::key_file, also replayed over fuzz/corpus/key_file by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::key_file(data);
});
