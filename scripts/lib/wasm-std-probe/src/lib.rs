//! Uses a little of `alloc`/`std` so that building this cdylib with `-Zbuild-std` produces and links
//! the whole std rlib set for wasm32-unknown-unknown.

use std::collections::HashMap;

#[no_mangle]
pub extern "C" fn wasm_std_probe(n: u32) -> u32 {
    let mut counts: HashMap<String, u32> = HashMap::new();
    for i in 0..n {
        *counts.entry(format!("k{}", i % 3)).or_default() += i;
    }
    counts.values().copied().sum()
}
