#![no_main]
// The body is phalanx_fuzz::node_config, also replayed over fuzz/corpus/node_config by
// `cargo test -p phalanx-fuzz`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = phalanx_fuzz::node_config(data);
});
