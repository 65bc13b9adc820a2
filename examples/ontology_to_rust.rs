//! Embedding tern as a library: open a store, load an ontology, render the `rust-classes` generator into a
//! temporary directory and print what it wrote.
//!
//! ```sh
//! cargo run --release --example ontology_to_rust [ONTOLOGY_FILE]
//! ```

use std::path::Path;

use tern::generate::{Action, Generator, RunOptions};
use tern::loaders::{self, Input, LoadOptions};
use tern::Store;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ontology = std::env::args()
        .nth(1)
        .unwrap_or_else(|| root.join("data/sample.ttl").to_string_lossy().into_owned());
    let work = tempfile::tempdir()?;
    let store = Store::open(work.path().join("store"))?;
    let loaded = loaders::load(
        &store,
        &[Input::from_arg(&ontology)],
        &LoadOptions::default(),
        &mut |_| {},
    )?;
    println!("loaded {ontology}: {loaded:?}");

    let generator = Generator::new(&store, root.join("data/generators/rust-classes"))?;
    let out = work.path().join("src/model");
    let report = generator.run(&out, &RunOptions::default())?;
    for o in &report.outputs {
        if o.action == Action::Created {
            println!("--- {} ---", o.path);
            print!("{}", std::fs::read_to_string(out.join(&o.path))?);
        }
    }
    println!("{}", report.summary());

    // Nothing changed: the receipt stored with the data proves it and nothing is rendered or written.
    let again = generator.run(&out, &RunOptions::default())?;
    println!("rerun: {}", again.summary());
    Ok(())
}
