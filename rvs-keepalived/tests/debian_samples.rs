//! Every sample keepalived.conf Debian ships (/usr/share/doc/keepalived/samples, some
//! gzipped) must load without error, and each with VRRP blocks must map to rvs's VRRP
//! configuration; warnings are expected and each must name its file and line. Skipped (with
//! a notice) where the keepalived package is not installed.

use std::io::Read;
use std::path::{Path, PathBuf};

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

/// The sample files, gzipped ones unpacked into a scratch directory.
fn samples() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(SAMPLES) else {
        return Vec::new();
    };
    let scratch = std::env::temp_dir().join(format!("rvs-ka-samples-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let mut out = Vec::new();
    for entry in dir {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("keepalived.conf") {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".gz") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("open"))
                .read_to_string(&mut text)
                .expect("gunzip");
            let target = scratch.join(stem);
            std::fs::write(&target, text).expect("write");
            out.push(target);
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn every_debian_sample_loads() {
    let files = samples();
    if files.is_empty() {
        rvs_lab::skip_or_fail(
            "every_debian_sample_loads",
            &format!("needs keepalived's samples in {SAMPLES} (apt-get install keepalived)"),
        );
        return;
    }
    let mut report = Vec::new();
    for file in &files {
        match rvs_keepalived::load(file) {
            Ok(import) => {
                for w in &import.warnings {
                    assert!(
                        w.loc.line > 0,
                        "{}: warning without a line: {w}",
                        file.display()
                    );
                    assert!(Path::new(&*w.loc.file).exists(), "{w}");
                }
                report.push(format!(
                    "{}: {} services, {} warnings",
                    file.display(),
                    import.config.services.len(),
                    import.warnings.len()
                ));
            }
            Err(e) => panic!("{} does not load: {e}", file.display()),
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        files.len() >= 20,
        "expected Debian's ~25 samples, found {}",
        files.len()
    );
}

#[test]
fn every_debian_sample_with_vrrp_maps() {
    let files = samples();
    if files.is_empty() {
        rvs_lab::skip_or_fail(
            "every_debian_sample_with_vrrp_maps",
            &format!("needs keepalived's samples in {SAMPLES} (apt-get install keepalived)"),
        );
        return;
    }
    let mut with_vrrp = 0;
    for file in &files {
        let import = rvs_keepalived::load(file).expect("loads");
        let k = &import.keepalived;
        if k.vrrp_instances.is_empty() && k.vrrp_scripts.is_empty() {
            continue;
        }
        with_vrrp += 1;
        let (config, warnings) = rvs_keepalived::vrrp::from_keepalived(k)
            .unwrap_or_else(|e| panic!("{} does not map: {e}", file.display()));
        assert_eq!(config.instances.len(), k.vrrp_instances.len());
        for w in &warnings {
            let (at, _) = w.split_once(": ").expect("located warning");
            let (path, line) = at.rsplit_once(':').expect("file:line");
            assert!(
                Path::new(path).exists() && line.parse::<u32>().is_ok_and(|l| l > 0),
                "{w}"
            );
        }
        eprintln!(
            "{}: {} instances, warnings: {warnings:#?}",
            file.display(),
            config.instances.len()
        );
    }
    assert!(
        with_vrrp >= 10,
        "expected Debian's ~12 VRRP samples, found {with_vrrp}"
    );
}
