//! Writes the generated seed corpus into `corpus/<target>/` (or the
//! directory given as the only argument): `cargo run --example seed_corpus`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let count = vmbus_fuzz::seeds::write_corpus(&root)?;
    println!("wrote {count} seeds into {}", root.display());
    Ok(())
}
