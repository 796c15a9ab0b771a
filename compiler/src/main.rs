//! `fhec`: the command-line edge of the compiler.
fn main() {
    println!("fhec {}", env!("CARGO_PKG_VERSION"));
}
