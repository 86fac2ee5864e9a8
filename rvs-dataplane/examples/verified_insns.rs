//! Prints how many instructions the kernel's verifier processed for each XDP program of the
//! embedded object (root; the 1 000 000 limit is per program). Maps are pinned in a scratch
//! directory under /sys/fs/bpf that is removed afterwards.
//!
//! `cargo run -p rvs-dataplane --example verified_insns`

use aya::{EbpfLoader, programs::Xdp};

fn main() -> anyhow::Result<()> {
    rvs_dataplane::ensure_bpffs()?;
    let dir = std::path::PathBuf::from(format!("/sys/fs/bpf/rvs-verified-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> anyhow::Result<()> {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&dir)
            .load(rvs_dataplane::EBPF_OBJECT)?;
        let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
        for name in names {
            let Some(prog) = ebpf.program_mut(&name) else {
                continue;
            };
            let Ok(xdp) = <&mut Xdp>::try_from(prog) else {
                continue;
            };
            match xdp.load() {
                Ok(()) => {
                    let n = xdp.info()?.verified_instruction_count().unwrap_or(0);
                    println!("{name}: {n} verified instructions");
                }
                Err(e) => println!("{name}: refused: {e:?}"),
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
