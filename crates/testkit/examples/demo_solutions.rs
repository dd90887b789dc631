//! Writes the demo solutions of `slipway dev` into a folder:
//! `cargo run -p slipway-testkit --example demo_solutions -- crates/cli/src/demo`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "crates/cli/src/demo".into());
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in slipway_testkit::demo::demo_solutions() {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, bytes)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
