//! `xtask package`: the Debian package, built with `dpkg-deb` from a staged tree (no
//! cargo-deb to install), and `--check`, which tests what was built: the file list, the
//! packaged binaries run from an extracted tree, the units pass `systemd-analyze
//! verify`, the default config passes `rvsd --check-config`, the manuals render.
//!
//! Sources: binaries from cargo; units, the default config and maintainer scripts from
//! `packaging/`; manuals and shell completions generated here from the command-line
//! definitions (rvsd's clap `Args`, rvsadm's ipvsadm-compatible option table).

mod docs;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};

/// Options of `xtask package`.
#[derive(clap::Args)]
pub struct PackageArgs {
    /// Package the debug build (fast, for tests) instead of the release build.
    #[arg(long)]
    debug: bool,
    /// After building, test the package (contents, binaries, units, manuals).
    #[arg(long)]
    check: bool,
}

/// The binaries: (cargo package, binary name).
const BINARIES: &[(&str, &str)] = &[
    ("rvsd", "rvsd"),
    ("rvsadm", "rvsadm"),
    ("rvs-vrrpd", "rvs-vrrpd"),
    ("rvs-realserver", "rvs-realserver"),
];

/// Files from `packaging/`: (source, installed path, mode).
const STATIC_FILES: &[(&str, &str, u32)] = &[
    ("rvsd.service", "usr/lib/systemd/system/rvsd.service", 0o644),
    (
        "rvsd-keepalived.service",
        "usr/lib/systemd/system/rvsd-keepalived.service",
        0o644,
    ),
    ("rvs.toml", "etc/rvs/rvs.toml", 0o644),
    ("default-rvsd", "etc/default/rvsd", 0o644),
];

/// Configuration files dpkg keeps a local edit of.
const CONFFILES: &[&str] = &["/etc/rvs/rvs.toml", "/etc/default/rvsd"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    ensure!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// gzip -9n, as Debian policy wants manuals compressed (no name or time stamp inside).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    child
        .stdin
        .take()
        .context("gzip stdin")?
        .write_all(bytes)
        .context("feeding gzip")?;
    let out = child.wait_with_output().context("gzip")?;
    ensure!(out.status.success(), "gzip failed");
    Ok(out.stdout)
}

/// Builds (and with `--check` tests) `target/debian/rvs_<version>_<arch>.deb`.
pub fn run_package(args: PackageArgs) -> Result<()> {
    let root = workspace_root();
    let profile = if args.debug { "debug" } else { "release" };
    let mut build = Command::new("cargo");
    build.current_dir(&root).args(["build", "-j2"]);
    if !args.debug {
        build.arg("--release");
    }
    for (pkg, bin) in BINARIES {
        build.args(["-p", pkg, "--bin", bin]);
    }
    run(&mut build)?;

    let version = env!("CARGO_PKG_VERSION");
    let arch = run(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let out_dir = root.join("target/debian");
    let name = format!("rvs_{version}_{arch}");
    let stage = out_dir.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    for (_, bin) in BINARIES {
        let from = root.join("target").join(profile).join(bin);
        let to = stage.join("usr/sbin").join(bin);
        fs::create_dir_all(stage.join("usr/sbin"))?;
        // Debug info stays out of the package (it is most of a debug build's size).
        run(Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&from)
            .arg(&to))?;
    }
    let packaging = root.join("packaging");
    for (src, dst, mode) in STATIC_FILES {
        let bytes =
            fs::read(packaging.join(src)).with_context(|| format!("reading packaging/{src}"))?;
        write(&stage.join(dst), &bytes, *mode)?;
    }
    let default_config = fs::read_to_string(packaging.join("rvs.toml"))?;
    for (page, text) in docs::manuals(version, &default_config)? {
        let section = page.rsplit('.').next().unwrap_or("8");
        let path = stage.join(format!("usr/share/man/man{section}/{page}.gz"));
        write(&path, &gzip(text.as_bytes())?, 0o644)?;
    }
    for (path, text) in docs::completions()? {
        write(&stage.join(path), text.as_bytes(), 0o644)?;
    }
    let doc = stage.join("usr/share/doc/rvs");
    write(
        &doc.join("copyright"),
        format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: rvs\n\nFiles: *\nLicense: {}\n",
            env!("CARGO_PKG_LICENSE")
        )
        .as_bytes(),
        0o644,
    )?;
    for md in ["README.md", "docs/operating.md"] {
        if let Ok(bytes) = fs::read(root.join(md)) {
            let file = Path::new(md).file_name().context("doc name")?;
            write(&doc.join(file), &bytes, 0o644)?;
        }
    }
    for script in ["postinst", "prerm"] {
        let bytes = fs::read(packaging.join(script))
            .with_context(|| format!("reading packaging/{script}"))?;
        write(&stage.join("DEBIAN").join(script), &bytes, 0o755)?;
    }
    write(
        &stage.join("DEBIAN/conffiles"),
        format!("{}\n", CONFFILES.join("\n")).as_bytes(),
        0o644,
    )?;
    let installed_kb = run(Command::new("du")
        .args(["-sk", "--exclude=DEBIAN"])
        .arg(&stage))?
    .split_whitespace()
    .next()
    .unwrap_or("0")
    .to_owned();
    let control = format!(
        "Package: rvs\nVersion: {version}\nArchitecture: {arch}\nMaintainer: rvs developers <rvs@localhost>\n\
         Installed-Size: {installed_kb}\nDepends: libc6 (>= 2.34), libgcc-s1\nRecommends: systemd\n\
         Suggests: keepalived\nSection: net\nPriority: optional\n\
         Description: Layer-4 load balancer with an XDP fast path (LVS/IPVS-compatible)\n \
         rvs is the LVS system (kernel IPVS + ipvsadm + keepalived) rebuilt with an\n \
         eBPF/XDP data path: rvsd runs rvs.toml or an existing keepalived.conf (virtual\n \
         servers, health checks, VRRP), rvsadm takes ipvsadm's commands, and a live\n \
         status page and Prometheus metrics show what it does.\n"
    );
    write(&stage.join("DEBIAN/control"), control.as_bytes(), 0o644)?;
    let deb = out_dir.join(format!("{name}.deb"));
    // A debug package is for the tests: fast compression is enough.
    let compression = if args.debug { "-Zgzip" } else { "-Zxz" };
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", compression, "--build"])
        .arg(&stage)
        .arg(&deb))?;
    println!("built {}", deb.display());
    if args.check {
        check(&deb)?;
    }
    Ok(())
}

/// Every file the package must hold (directories aside).
fn expected_files() -> Vec<String> {
    let mut files: Vec<String> = BINARIES
        .iter()
        .map(|(_, b)| format!("./usr/sbin/{b}"))
        .collect();
    files.extend(STATIC_FILES.iter().map(|(_, d, _)| format!("./{d}")));
    files.extend(
        ["rvsd.8", "rvsadm.8", "rvs.toml.5"]
            .iter()
            .map(|p| format!("./usr/share/man/man{}/{p}.gz", &p[p.len() - 1..])),
    );
    for bin in ["rvsd", "rvsadm"] {
        files.push(format!("./usr/share/bash-completion/completions/{bin}"));
        files.push(format!("./usr/share/zsh/vendor-completions/_{bin}"));
        files.push(format!("./usr/share/fish/vendor_completions.d/{bin}.fish"));
    }
    files.push("./usr/share/doc/rvs/copyright".to_owned());
    files
}

/// Tests a built package.
fn check(deb: &Path) -> Result<()> {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    let listed: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for f in expected_files() {
        ensure!(
            listed.contains(&f.as_str()),
            "{} lacks {f}:\n{listing}",
            deb.display()
        );
    }
    for line in listing
        .lines()
        .filter(|l| l.contains("./usr/sbin/") && !l.ends_with('/'))
    {
        ensure!(
            line.starts_with("-rwxr-xr-x root/root"),
            "binary not 0755 root:root: {line}"
        );
    }
    let conffiles = run(Command::new("dpkg-deb")
        .args(["-I"])
        .arg(deb)
        .arg("conffiles"))?;
    for c in CONFFILES {
        ensure!(conffiles.lines().any(|l| l == *c), "{c} is not a conffile");
    }
    let tree = tempdir()?;
    let result = check_tree(deb, &tree);
    let _ = fs::remove_dir_all(&tree);
    result?;
    println!(
        "package checked: {} files, binaries run, units verify, manuals render",
        listed.len()
    );
    Ok(())
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rvs-deb-check-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn check_tree(deb: &Path, tree: &Path) -> Result<()> {
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(tree))?;
    let sbin = tree.join("usr/sbin");
    let version = env!("CARGO_PKG_VERSION");
    let out = run(Command::new(sbin.join("rvsd")).arg("--version"))?;
    ensure!(
        out.trim() == format!("rvsd {version}"),
        "rvsd --version: {out}"
    );
    let out = run(Command::new(sbin.join("rvsd")).arg("--help"))?;
    ensure!(out.contains("--keepalived"), "rvsd --help: {out}");
    let out = run(Command::new(sbin.join("rvsadm")).arg("--version"))?;
    ensure!(
        out.starts_with(&format!("rvsadm v{version}")),
        "rvsadm --version: {out}"
    );
    let out = run(Command::new(sbin.join("rvsadm")).arg("-h"))?;
    ensure!(out.contains("--add-service"), "rvsadm -h: {out}");
    let out = run(Command::new(sbin.join("rvs-vrrpd")).arg("--help"))?;
    ensure!(out.contains("--keepalived"), "rvs-vrrpd --help: {out}");
    let out = run(Command::new(sbin.join("rvs-realserver")).arg("--version"))?;
    ensure!(
        out.trim() == format!("rvs-realserver {version}"),
        "rvs-realserver --version: {out}"
    );
    let out = run(Command::new(sbin.join("rvs-realserver")).arg("--help"))?;
    ensure!(
        out.contains("prepare") && out.contains("undo"),
        "rvs-realserver --help: {out}"
    );
    // The shipped default configuration is valid.
    let out = run(Command::new(sbin.join("rvsd"))
        .arg("--check-config")
        .arg(tree.join("etc/rvs/rvs.toml")))?;
    ensure!(out.contains("valid (0 services"), "default config: {out}");
    // The units, as systemd would load them once installed: in a private mount namespace
    // where /usr/sbin is the package's, with the package's manuals on MANPATH (verify
    // checks that ExecStart's binary exists and that Documentation= pages open).
    let units = tree.join("usr/lib/systemd/system");
    let script =
        "mount --bind \"$1/usr/sbin\" /usr/sbin && shift && exec systemd-analyze verify \"$@\"";
    let verify = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "verify",
        ])
        .arg(tree)
        .arg(units.join("rvsd.service"))
        .arg(units.join("rvsd-keepalived.service"))
        // A trailing colon keeps the system's manuals too (keepalived.conf(5)).
        .env(
            "MANPATH",
            format!("{}:", tree.join("usr/share/man").display()),
        )
        .output()
        .context("running systemd-analyze verify (scripts/setup.sh installs systemd)")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    if !verify.status.success() || said.lines().any(|l| l.contains("rvsd")) {
        bail!("systemd-analyze verify on the units:\n{said}");
    }
    run_packaged_daemon(tree)?;
    // The manuals render without warnings.
    for page in ["man8/rvsd.8.gz", "man8/rvsadm.8.gz", "man5/rvs.toml.5.gz"] {
        let path = tree.join("usr/share/man").join(page);
        let out = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .context("running man")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success() && stderr.trim().is_empty() && out.stdout.len() > 500,
            "man -l {page}: {stderr}"
        );
    }
    Ok(())
}

/// The packaged rvsd runs the shipped configuration (with a private pin path) in a
/// throwaway namespace; the packaged rvsadm drives it over its socket, and it serves the
/// status page.
fn run_packaged_daemon(tree: &Path) -> Result<()> {
    if !rvs_lab::root_or_skip("running the packaged rvsd") {
        return Ok(());
    }
    let sbin = tree.join("usr/sbin");
    let prefix = rvs_lab::unique_prefix();
    let ns = rvs_lab::Netns::new(&format!("{prefix}-pkg"))?;
    let pin = PathBuf::from(format!("/sys/fs/bpf/{prefix}-pkg"));
    let shipped = fs::read_to_string(tree.join("etc/rvs/rvs.toml"))?;
    let default_pin = "pin_path = \"/sys/fs/bpf/rvs\"";
    ensure!(
        shipped.contains(default_pin),
        "the default config has no {default_pin}"
    );
    let config = shipped.replace(default_pin, &format!("pin_path = \"{}\"", pin.display()));
    let rvsd = rvs_lab::Rvsd::start(&ns, &sbin.join("rvsd"), &config, &pin)
        .context("the packaged rvsd starts with the shipped config")?;
    let rvsadm = sbin.join("rvsadm").display().to_string();
    let socket = rvsd.socket().display().to_string();
    ns.exec(&[
        &rvsadm,
        "--socket",
        &socket,
        "-A",
        "-t",
        "198.18.0.10:80",
        "-s",
        "rr",
    ])?;
    let listing = ns.exec(&[&rvsadm, "--socket", &socket, "-L", "-n"])?;
    ensure!(
        listing.contains("TCP  198.18.0.10:80 rr"),
        "rvsadm -L -n against the packaged rvsd:\n{listing}"
    );
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], 9595));
    let page = rvs_lab::http_get_path(&ns, web, "/")?;
    ensure!(
        page.contains("<title>rvs status</title>"),
        "status page: {page}"
    );
    let json = rvs_lab::http_get_path(&ns, web, "/status.json")?;
    ensure!(json.contains("\"198.18.0.10\""), "status.json: {json}");
    drop(rvsd);
    println!(
        "the packaged rvsd ran the shipped config; the packaged rvsadm drove it; / and /status.json answered"
    );
    Ok(())
}
