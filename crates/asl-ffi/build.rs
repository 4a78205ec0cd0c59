//! Gives libasl.so its soname and versioned symbols: the ABI contract C programs link
//! against (see docs/libasl.md, "ABI").

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rerun-if-changed=libasl.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libasl.so.0");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/libasl.map");
}
