//! Link the `n4a` binary as a position-dependent executable: a 100 MB
//! binary (polars) otherwise spends about 4 ms of every run applying
//! 145,000 relocations at start-up, most of a footer-only answer's time.
//! Only the binaries' link step changes; the crates compile as usual.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
