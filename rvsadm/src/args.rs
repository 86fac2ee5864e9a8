//! ipvsadm 1.31's command line, parsed the way ipvsadm parses it: the same option table,
//! the same order of checks, the same messages and exit codes (its `parse_options`,
//! `generic_opt_check` and `process_options`), ending in an [`Invocation`]: a change for
//! rvsd (an [`Op`]), a listing, `-S`, `-R`, help or version.
//!
//! What rvs does not implement yet (fwmark, IPv6 and SCTP services, persistence engines,
//! an IPv6 sync group) is parsed and checked like ipvsadm does, so
//! ipvsadm's own errors come first, and then refused with a message that says so.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_api::Op;
use rvs_config::{
    ForwardMethod, Persistence, Protocol, RealServer, SchedFlag, Scheduler, ServiceId, Timeouts,
    Tunnel, TunnelChecksum, TunnelType, VirtualService,
};

use crate::{
    Failure,
    num::{inet_aton, string_to_number, strtol10},
    popt::{ArgKind, OptSpec, Popt},
    resolve::{Proto, Resolver},
};

/// Longest timeout ipvsadm accepts (31 days).
pub const MAX_TIMEOUT: i64 = 86400 * 31;
/// Persistence timeout of `-p` without a value.
pub const DEFAULT_PERSISTENT_TIMEOUT: u32 = 360;
/// The scheduler ipvsadm 1.31 uses when `-s` is not given.
pub const DEFAULT_SCHEDULER: &str = rvs_config::DEFAULT_SCHEDULER.name();

/// ipvsadm's commands, in its order (the rows of its option table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

const CMD_NAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

// Option indexes (ipvsadm's OPTC_*).
const O_NUMERIC: usize = 0;
const O_CONNECTION: usize = 1;
const O_SERVICE: usize = 2;
const O_SCHEDULER: usize = 3;
const O_PERSISTENT: usize = 4;
const O_NETMASK: usize = 5;
const O_SERVER: usize = 6;
const O_FORWARD: usize = 7;
const O_WEIGHT: usize = 8;
const O_UTHRESHOLD: usize = 9;
const O_LTHRESHOLD: usize = 10;
const O_MCAST: usize = 11;
const O_TIMEOUT: usize = 12;
const O_DAEMON: usize = 13;
const O_STATS: usize = 14;
const O_RATE: usize = 15;
const O_THRESHOLDS: usize = 16;
const O_PERSISTENTCONN: usize = 17;
const O_NOSORT: usize = 18;
const O_SYNCID: usize = 19;
const O_EXACT: usize = 20;
const O_ONEPACKET: usize = 21;
const O_PE: usize = 22;
const O_SCHED_FLAGS: usize = 23;
const O_MCAST_GROUP: usize = 24;
const O_MCAST_PORT: usize = 25;
const O_MCAST_TTL: usize = 26;
const O_SYNC_MAXLEN: usize = 27;
const O_TUN_INFO: usize = 28;
const O_TUN_TYPE: usize = 29;
const O_TUN_PORT: usize = 30;
const O_TUN_NOCSUM: usize = 31;
const O_TUN_CSUM: usize = 32;
const O_TUN_REMCSUM: usize = 33;
const NUMBER_OF_OPT: usize = 34;

const OPT_NAMES: [&str; NUMBER_OF_OPT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// ipvsadm's `commands_v_options`, one row per command, one column per option:
/// '+' compulsory, 'x' illegal, '1' exclusive (at most one), ' ' optional.
const COMMANDS_V_OPTIONS: [[u8; NUMBER_OF_OPT]; 14] = [
    // -n, -c, svc, -s, -p, -M, -r, fwd, -w, -x, -y, mcast, timeout, daemon, stats, rate,
    // thresholds, persistent-conn, nosort, syncid, exact, ops, pe, -b, mcast-group,
    // mcast-port, mcast-ttl, sync-maxlen, tun-info, tun-type, tun-port, tun-nocsum,
    // tun-csum, tun-remcsum
    *b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // add-service
    *b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // edit-service
    *b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-service
    *b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // flush
    *b" 11xxxxxxxxx11       xxxxxxx xxxxx", // list
    *b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // add-server
    *b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-server
    *b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // edit-server
    *b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // set
    *b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxx", // start-daemon
    *b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx", // stop-daemon
    *b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // restore
    *b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // save
    *b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // zero
];

/// What the scanner returns for each option (ipvsadm's popt `val`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    AddService,
    EditService,
    DeleteService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DeleteServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

const fn opt(long: &'static str, short: u8, arg: ArgKind, tag: Tag) -> OptSpec<Tag> {
    OptSpec {
        long: Some(long),
        short: if short == 0 { None } else { Some(short) },
        arg,
        tag,
    }
}

use ArgKind::{None as NoArg, Optional, Required};

/// ipvsadm 1.31's popt table, in its order (the first match of a name wins).
const OPTIONS: &[OptSpec<Tag>] = &[
    opt("add-service", b'A', NoArg, Tag::AddService),
    opt("edit-service", b'E', NoArg, Tag::EditService),
    opt("delete-service", b'D', NoArg, Tag::DeleteService),
    opt("clear", b'C', NoArg, Tag::Clear),
    opt("list", b'L', NoArg, Tag::List),
    opt("list", b'l', NoArg, Tag::List),
    opt("zero", b'Z', NoArg, Tag::Zero),
    opt("add-server", b'a', NoArg, Tag::AddServer),
    opt("edit-server", b'e', NoArg, Tag::EditServer),
    opt("delete-server", b'd', NoArg, Tag::DeleteServer),
    opt("set", 0, NoArg, Tag::Set),
    opt("help", b'h', NoArg, Tag::Help),
    opt("version", b'v', NoArg, Tag::Version),
    opt("restore", b'R', NoArg, Tag::Restore),
    opt("save", b'S', NoArg, Tag::Save),
    opt("start-daemon", 0, Required, Tag::StartDaemon),
    opt("stop-daemon", 0, Required, Tag::StopDaemon),
    opt("tcp-service", b't', Required, Tag::Tcp),
    opt("udp-service", b'u', Required, Tag::Udp),
    opt("sctp-service", 0, Required, Tag::Sctp),
    opt("fwmark-service", b'f', Required, Tag::Fwmark),
    opt("scheduler", b's', Required, Tag::Scheduler),
    opt("persistent", b'p', Optional, Tag::Persistent),
    opt("netmask", b'M', Required, Tag::Netmask),
    opt("real-server", b'r', Required, Tag::RealServer),
    opt("masquerading", b'm', NoArg, Tag::Masquerading),
    opt("ipip", b'i', NoArg, Tag::Ipip),
    opt("gatewaying", b'g', NoArg, Tag::Gatewaying),
    opt("weight", b'w', Required, Tag::Weight),
    opt("u-threshold", b'x', Required, Tag::UThreshold),
    opt("l-threshold", b'y', Required, Tag::LThreshold),
    opt("numeric", b'n', NoArg, Tag::Numeric),
    opt("connection", b'c', NoArg, Tag::Connection),
    opt("mcast-interface", 0, Required, Tag::McastInterface),
    opt("syncid", 0, Required, Tag::SyncId),
    opt("timeout", 0, NoArg, Tag::Timeout),
    opt("daemon", 0, NoArg, Tag::Daemon),
    opt("stats", 0, NoArg, Tag::Stats),
    opt("rate", 0, NoArg, Tag::Rate),
    opt("thresholds", 0, NoArg, Tag::Thresholds),
    opt("persistent-conn", 0, NoArg, Tag::PersistentConn),
    opt("nosort", 0, NoArg, Tag::NoSort),
    opt("sort", 0, NoArg, Tag::Sort),
    opt("exact", b'X', NoArg, Tag::Exact),
    opt("ipv6", b'6', NoArg, Tag::Ipv6),
    opt("ops", b'o', NoArg, Tag::Ops),
    opt("pe", 0, Required, Tag::Pe),
    opt("sched-flags", b'b', Required, Tag::SchedFlags),
    opt("mcast-group", 0, Required, Tag::McastGroup),
    opt("mcast-port", 0, Required, Tag::McastPort),
    opt("mcast-ttl", 0, Required, Tag::McastTtl),
    opt("sync-maxlen", 0, Required, Tag::SyncMaxlen),
    opt("tun-info", 0, NoArg, Tag::TunInfo),
    opt("tun-type", 0, Required, Tag::TunType),
    opt("tun-port", 0, Required, Tag::TunPort),
    opt("tun-nocsum", 0, NoArg, Tag::TunNocsum),
    opt("tun-csum", 0, NoArg, Tag::TunCsum),
    opt("tun-remcsum", 0, NoArg, Tag::TunRemcsum),
];

/// How a listing is printed (ipvsadm's FMT_* flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Format {
    /// `-n`: addresses and ports as numbers.
    pub numeric: bool,
    /// `-S`: as rules for `-R`.
    pub rule: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--nosort`: services and real servers in rvsd's order.
    pub nosort: bool,
    /// `--exact`: counters unabbreviated.
    pub exact: bool,
    /// `--tun-info`.
    pub tun_info: bool,
}

/// What a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListTarget {
    /// Every service (`-L`).
    All,
    /// One service (`-L -t VIP:PORT`).
    Service(ServiceId),
    /// The connection table (`-L -c`).
    Connections,
    /// The timeouts (`-L --timeout`).
    Timeouts,
    /// The sync daemons (`-L --daemon`).
    Daemons,
}

/// A listing to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRequest {
    /// What to list.
    pub target: ListTarget,
    /// How.
    pub format: Format,
    /// As JSON (`--json`, rvsadm's own).
    pub json: bool,
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `-h`: print the usage on stdout.
    Usage,
    /// `-v`: print the version.
    Version,
    /// A listing.
    List(ListRequest),
    /// `-S`: the rules, numeric or not.
    Save {
        /// `-n`.
        numeric: bool,
    },
    /// `-R`: read rules from stdin.
    Restore,
    /// A change for rvsd.
    Apply(Op),
    /// `--start-daemon`: start a connection sync daemon.
    StartDaemon(rvs_api::SyncDaemonConfig),
    /// `--stop-daemon`: stop one.
    StopDaemon(rvs_api::SyncRole),
}

/// The sync daemon options of one command line.
#[derive(Debug, Clone, Default)]
struct SyncArgs {
    backup: bool,
    interface: Option<String>,
    syncid: u8,
    maxlen: Option<u16>,
    group: Option<Ipv4Addr>,
    group_v6: bool,
    port: Option<u16>,
    ttl: Option<u8>,
}

/// Forwarding method bits as ipvsadm keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fwd {
    Masq,
    Tunnel,
    Route,
}

/// ipvsadm's `ipvs_service_t`, as far as the command line fills it.
#[derive(Debug, Clone)]
struct Svc {
    protocol: Option<Proto>,
    addr: Option<IpAddr>,
    port: u16,
    fwmark: u32,
    ipv6_fwmark: bool,
    sched_name: String,
    persistent: bool,
    timeout: u32,
    netmask: u32,
    one_packet: bool,
    pe_name: String,
    flags: u8,
}

/// ipvsadm's `ipvs_dest_t`, as far as the command line fills it.
#[derive(Debug, Clone)]
struct Dest {
    addr: Option<IpAddr>,
    port: u16,
    fwd: Fwd,
    weight: u32,
    u_threshold: u32,
    l_threshold: u32,
    tun_type: usize,
    tun_port: u16,
    tun_checksum: TunnelChecksum,
}

const SCHED1: u8 = 1;
const SCHED2: u8 = 2;
const SCHED3: u8 = 4;

const TUN_NAMES: [&str; 3] = ["ipip", "gue", "gre"];
const TUN_OPTS: [usize; 4] = [O_TUN_PORT, O_TUN_NOCSUM, O_TUN_CSUM, O_TUN_REMCSUM];
/// ipvsadm's `tunnel_types_v_options` (columns: tun-port, nocsum, csum, remcsum).
const TUNNEL_TYPES_V_OPTIONS: [[u8; 4]; 3] = [*b"xxxx", *b"+111", *b"x11x"];

fn fail(code: i32, message: impl Into<String>) -> Failure {
    let mut stderr = message.into();
    stderr.push('\n');
    Failure { stderr, code }
}

/// ipvsadm's `tryhelp_exit`.
fn tryhelp(program: &str) -> Failure {
    Failure {
        stderr: format!("Try `{program} -h' or '{program} --help' for more information.\n"),
        code: 255,
    }
}

/// C's `atoi`: leading whitespace and sign, then as many digits as there are.
fn atoi(s: &str) -> i64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits: String = t
        .chars()
        .take_while(char::is_ascii_digit)
        .take(18)
        .collect();
    let v: i64 = digits.parse().unwrap_or(0);
    if neg { -v } else { v }
}

/// ipvsadm's `str_is_digit` (true for the empty string too).
fn str_is_digit(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// What `parse_service` found.
struct Parsed {
    addr: IpAddr,
    port: Option<u16>,
}

/// ipvsadm's `parse_service`: `host[:port]` or `[ipv6]:port`; `None` is its SERVICE_NONE.
fn parse_service(buf: &str, proto: Option<Proto>, resolver: &dyn Resolver) -> Option<Parsed> {
    if str_is_digit(buf) {
        return None;
    }
    let mut host = buf;
    let mut port: Option<&str> = None;
    if let Some(rest) = buf.strip_prefix('[') {
        let close = rest.find(']')?;
        let after = &rest[close + 1..];
        port = Some(after.strip_prefix(':')?);
        host = &rest[..close];
    }
    let addr = if let Ok(a6) = host.parse::<Ipv6Addr>() {
        IpAddr::V6(a6)
    } else {
        // An IPv4 address or host name loses a bracketed port: ipvsadm looks for the port
        // again with strrchr(':') on what is left.
        port = None;
        if let Some(i) = host.rfind(':') {
            port = Some(&host[i + 1..]);
            host = &host[..i];
        }
        IpAddr::V4(inet_aton(host).or_else(|| resolver.host_v4(host))?)
    };
    let port = match port {
        None => None,
        Some(p) => Some(match string_to_number(p, 0, 65535) {
            Some(n) => n as u16,
            None => resolver.service_port(p, proto?)?,
        }),
    };
    Some(Parsed { addr, port })
}

/// ipvsadm's `parse_timeout`.
fn parse_timeout(buf: Option<&str>, min: i64, max: i64) -> Result<u32, Failure> {
    let Some(buf) = buf else {
        return Ok(DEFAULT_PERSISTENT_TIMEOUT);
    };
    string_to_number(buf, min, max)
        .map(|n| n as u32)
        .ok_or_else(|| fail(2, format!("invalid timeout value `{buf}' specified")))
}

/// ipvsadm's `parse_fwmark`.
fn parse_fwmark(buf: &str) -> Result<u32, Failure> {
    match strtol10(buf) {
        Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => Ok(n as u32),
        _ => Err(fail(2, format!("invalid fwmark value `{buf}' specified"))),
    }
}

/// ipvsadm's `parse_sched_flags`.
fn parse_sched_flags(sched: &str, arg: &str) -> Result<u8, Failure> {
    let sched = if sched.is_empty() {
        DEFAULT_SCHEDULER
    } else {
        sched
    };
    let mut flags = 0;
    let mut any = false;
    for flag in arg.split(',').filter(|f| !f.is_empty()) {
        any = true;
        let (bit, only) = match flag {
            "flag-1" => (SCHED1, None),
            "flag-2" => (SCHED2, None),
            "flag-3" => (SCHED3, None),
            "sh-fallback" => (SCHED1, Some("sh")),
            "sh-port" => (SCHED2, Some("sh")),
            "mh-fallback" => (SCHED1, Some("mh")),
            "mh-port" => (SCHED2, Some("mh")),
            _ => return Err(fail(2, format!("invalid scheduler flag `{flag}'"))),
        };
        flags |= bit;
        if only.is_some_and(|s| s != sched) {
            return Err(fail(2, format!("incompatible scheduler flag `{flag}'")));
        }
    }
    if !any {
        // ipvsadm 1.31 crashes here (strtok finds no token); say what is wrong instead.
        return Err(fail(2, "invalid scheduler flag `'"));
    }
    Ok(flags)
}

/// The command line being parsed (ipvsadm's `ipvs_command_entry` plus options and format).
struct Entry {
    cmd: Cmd,
    sync: SyncArgs,
    svc: Svc,
    dest: Dest,
    timeouts: Timeouts,
    options: u64,
    format: Format,
}

impl Entry {
    fn new(cmd: Cmd) -> Self {
        Self {
            cmd,
            sync: SyncArgs::default(),
            svc: Svc {
                protocol: None,
                addr: None,
                port: 0,
                fwmark: 0,
                ipv6_fwmark: false,
                sched_name: String::new(),
                persistent: false,
                timeout: 0,
                netmask: u32::MAX,
                one_packet: false,
                pe_name: String::new(),
                flags: 0,
            },
            dest: Dest {
                addr: None,
                port: 0,
                fwd: Fwd::Route,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: 0,
                tun_port: 0,
                tun_checksum: TunnelChecksum::Nocsum,
            },
            timeouts: Timeouts {
                tcp: 0,
                tcp_fin: 0,
                udp: 0,
            },
            options: 0,
            format: Format::default(),
        }
    }

    fn has(&self, o: usize) -> bool {
        self.options & (1 << o) != 0
    }

    /// ipvsadm's `set_option`.
    fn set(&mut self, o: usize) -> Result<(), Failure> {
        if self.has(o) {
            return Err(fail(
                2,
                format!("multiple '{}' options specified", OPT_NAMES[o]),
            ));
        }
        self.options |= 1 << o;
        Ok(())
    }
}

/// Parses one command line (`argv[0]` is the program name, used in messages) the way
/// ipvsadm 1.31 does. `in_restore` is set for the lines `-R` reads, where `-R` itself is
/// refused as ipvsadm refuses it. `json` is rvsadm's `--json`, taken out of the line
/// before.
pub fn parse(
    argv: &[String],
    resolver: &dyn Resolver,
    in_restore: bool,
    json: bool,
) -> Result<Invocation, Failure> {
    let program = argv.first().map(String::as_str).unwrap_or("ipvsadm");
    let posix = std::env::var_os("POSIXLY_CORRECT").is_some()
        || std::env::var_os("POSIX_ME_HARDER").is_some();
    let mut popt = Popt::new(OPTIONS, argv, posix);

    let (tag, arg) = match popt.next_opt() {
        Some(Ok(x)) => x,
        _ => return Err(tryhelp(program)),
    };
    let mut daemon_role = rvs_api::SyncRole::Master;
    let cmd = match tag {
        Tag::AddService => Cmd::Add,
        Tag::EditService => Cmd::Edit,
        Tag::DeleteService => Cmd::Del,
        Tag::AddServer => Cmd::AddDest,
        Tag::EditServer => Cmd::EditDest,
        Tag::DeleteServer => Cmd::DelDest,
        Tag::Clear => Cmd::Flush,
        Tag::List => Cmd::List,
        Tag::Zero => Cmd::Zero,
        Tag::Set => Cmd::Timeout,
        Tag::Restore => Cmd::Restore,
        Tag::Save => Cmd::Save,
        Tag::StartDaemon | Tag::StopDaemon => {
            let arg = arg.unwrap_or_default();
            if arg != "master" && arg != "backup" {
                return Err(fail(
                    2,
                    if tag == Tag::StartDaemon {
                        "illegal start-daemon parameter specified"
                    } else {
                        "illegal start_daemon specified"
                    },
                ));
            }
            if arg == "backup" {
                daemon_role = rvs_api::SyncRole::Backup;
            }
            if tag == Tag::StartDaemon {
                Cmd::StartDaemon
            } else {
                Cmd::StopDaemon
            }
        }
        Tag::Help => return Ok(Invocation::Usage),
        Tag::Version => return Ok(Invocation::Version),
        _ => return Err(tryhelp(program)),
    };
    let mut e = Entry::new(cmd);
    e.sync.backup = daemon_role == rvs_api::SyncRole::Backup;
    let mut sched_flags_arg = String::new();

    loop {
        let (tag, raw) = match popt.next_opt() {
            None => break,
            Some(Ok(x)) => x,
            Some(Err(err)) => {
                return Err(Failure {
                    stderr: format!("{}: {}\n", popt.bad_option(), err.text()),
                    code: 255,
                });
            }
        };
        let arg = raw.clone().unwrap_or_default();
        match tag {
            Tag::Tcp | Tag::Udp | Tag::Sctp => {
                e.set(O_SERVICE)?;
                e.svc.protocol = Some(match tag {
                    Tag::Tcp => Proto::Tcp,
                    Tag::Udp => Proto::Udp,
                    _ => Proto::Sctp,
                });
                let p = parse_service(&arg, e.svc.protocol, resolver)
                    .ok_or_else(|| fail(2, "illegal virtual server address[:port] specified"))?;
                e.svc.addr = Some(p.addr);
                if let Some(port) = p.port {
                    e.svc.port = port;
                }
            }
            Tag::Fwmark => {
                e.set(O_SERVICE)?;
                e.svc.protocol = Some(Proto::Tcp);
                e.svc.fwmark = parse_fwmark(&arg)?;
            }
            Tag::Scheduler => {
                e.set(O_SCHEDULER)?;
                // ipvsadm copies at most IP_VS_SCHEDNAME_MAXLEN - 1 bytes.
                e.svc.sched_name = truncate_bytes(&arg, 15);
            }
            Tag::Persistent => {
                e.set(O_PERSISTENT)?;
                e.svc.persistent = true;
                // No argument (NULL in ipvsadm) is the default; `-p=` is an empty one.
                e.svc.timeout = parse_timeout(raw.as_deref(), 1, MAX_TIMEOUT)?;
            }
            Tag::Netmask => {
                e.set(O_NETMASK)?;
                if matches!(e.svc.addr, Some(IpAddr::V6(_))) {
                    let m = atoi(&arg);
                    if !(1..=128).contains(&m) {
                        return Err(fail(2, "illegal ipv6 netmask specified"));
                    }
                    e.svc.netmask = m as u32;
                } else {
                    let mask = inet_aton(&arg)
                        .or_else(|| resolver.host_v4(&arg))
                        .ok_or_else(|| {
                            fail(2, "illegal virtual server persistent mask specified")
                        })?;
                    e.svc.netmask = u32::from(mask);
                }
            }
            Tag::RealServer => {
                e.set(O_SERVER)?;
                let p = parse_service(&arg, e.svc.protocol, resolver)
                    .ok_or_else(|| fail(2, "illegal real server address[:port] specified"))?;
                e.dest.addr = Some(p.addr);
                e.dest.port = p.port.unwrap_or(e.svc.port);
            }
            Tag::Ipip => {
                e.set(O_FORWARD)?;
                e.dest.fwd = Fwd::Tunnel;
            }
            Tag::Gatewaying => {
                e.set(O_FORWARD)?;
                e.dest.fwd = Fwd::Route;
            }
            Tag::Masquerading => {
                e.set(O_FORWARD)?;
                e.dest.fwd = Fwd::Masq;
            }
            Tag::Weight => {
                e.set(O_WEIGHT)?;
                // ipvsadm 1.31 as Debian ships it accepts 0..=INT_MAX (checked in the VM);
                // rvsd refuses what its dataplane cannot hold.
                e.dest.weight = string_to_number(&arg, 0, i64::from(i32::MAX))
                    .ok_or_else(|| fail(2, "illegal weight specified"))?
                    as u32;
            }
            Tag::UThreshold => {
                e.set(O_UTHRESHOLD)?;
                e.dest.u_threshold = string_to_number(&arg, 0, i64::from(i32::MAX))
                    .ok_or_else(|| fail(2, "illegal u_threshold specified"))?
                    as u32;
            }
            Tag::LThreshold => {
                e.set(O_LTHRESHOLD)?;
                e.dest.l_threshold = string_to_number(&arg, 0, i64::from(i32::MAX))
                    .ok_or_else(|| fail(2, "illegal l_threshold specified"))?
                    as u32;
            }
            Tag::Connection => e.set(O_CONNECTION)?,
            Tag::Numeric => {
                e.set(O_NUMERIC)?;
                e.format.numeric = true;
            }
            Tag::McastInterface => {
                e.set(O_MCAST)?;
                // ipvsadm copies at most IP_VS_IFNAME_MAXLEN - 1 bytes.
                e.sync.interface = Some(truncate_bytes(&arg, 15));
            }
            Tag::SyncId => {
                e.set(O_SYNCID)?;
                e.sync.syncid = string_to_number(&arg, 0, 255)
                    .ok_or_else(|| fail(2, "illegal syncid specified"))?
                    as u8;
            }
            Tag::Timeout => e.set(O_TIMEOUT)?,
            Tag::Daemon => e.set(O_DAEMON)?,
            Tag::Stats => {
                e.set(O_STATS)?;
                e.format.stats = true;
            }
            Tag::Rate => {
                e.set(O_RATE)?;
                e.format.rate = true;
            }
            Tag::Thresholds => {
                e.set(O_THRESHOLDS)?;
                e.format.thresholds = true;
            }
            Tag::PersistentConn => {
                e.set(O_PERSISTENTCONN)?;
                e.format.persistent_conn = true;
            }
            Tag::NoSort => {
                e.set(O_NOSORT)?;
                e.format.nosort = true;
            }
            Tag::Sort => {}
            Tag::Exact => {
                e.set(O_EXACT)?;
                e.format.exact = true;
            }
            Tag::Ipv6 => {
                if e.svc.fwmark != 0 {
                    e.svc.ipv6_fwmark = true;
                    e.svc.netmask = 128;
                } else {
                    return Err(fail(2, "-6 used before -f\n"));
                }
            }
            Tag::Ops => {
                e.set(O_ONEPACKET)?;
                e.svc.one_packet = true;
            }
            Tag::Pe => {
                e.set(O_PE)?;
                e.svc.pe_name = truncate_bytes(&arg, 16);
            }
            Tag::SchedFlags => {
                e.set(O_SCHED_FLAGS)?;
                sched_flags_arg = truncate_bytes(&arg, 127);
            }
            Tag::McastGroup => {
                e.set(O_MCAST_GROUP)?;
                let ok = if arg.contains(':') {
                    arg.parse::<Ipv6Addr>().is_ok_and(|a| a.is_multicast())
                } else {
                    arg.parse::<Ipv4Addr>().is_ok_and(|a| a.is_multicast())
                };
                if !ok {
                    let family = if arg.contains(':') { "IPv6" } else { "IPv4" };
                    return Err(fail(2, format!("invalid {family} mcast-group `{arg}'")));
                }
                e.sync.group = arg.parse::<Ipv4Addr>().ok();
                e.sync.group_v6 = arg.contains(':');
            }
            Tag::McastPort => {
                e.set(O_MCAST_PORT)?;
                e.sync.port = Some(
                    string_to_number(&arg, 1, 65535)
                        .ok_or_else(|| fail(2, "illegal mcast-port specified"))?
                        as u16,
                );
            }
            Tag::McastTtl => {
                e.set(O_MCAST_TTL)?;
                e.sync.ttl = Some(
                    string_to_number(&arg, 1, 255)
                        .ok_or_else(|| fail(2, "illegal mcast-ttl specified"))?
                        as u8,
                );
            }
            Tag::SyncMaxlen => {
                e.set(O_SYNC_MAXLEN)?;
                e.sync.maxlen = Some(
                    string_to_number(&arg, 1, 65535 - 20 - 8)
                        .ok_or_else(|| fail(2, "illegal sync-maxlen specified"))?
                        as u16,
                );
            }
            Tag::TunInfo => {
                e.set(O_TUN_INFO)?;
                e.format.tun_info = true;
            }
            Tag::TunType => {
                e.set(O_TUN_TYPE)?;
                e.dest.tun_type = TUN_NAMES
                    .iter()
                    .position(|n| *n == arg)
                    .ok_or_else(|| fail(2, "illegal tunnel type specified"))?;
            }
            Tag::TunPort => {
                e.set(O_TUN_PORT)?;
                let port = string_to_number(&arg, 1, 65535)
                    .ok_or_else(|| fail(2, "illegal tunnel port specified"))?;
                // In range 1..=65535 by the check above.
                e.dest.tun_port = u16::try_from(port).unwrap_or(0);
            }
            Tag::TunNocsum => {
                e.set(O_TUN_NOCSUM)?;
                e.dest.tun_checksum = TunnelChecksum::Nocsum;
            }
            Tag::TunCsum => {
                e.set(O_TUN_CSUM)?;
                e.dest.tun_checksum = TunnelChecksum::Csum;
            }
            Tag::TunRemcsum => {
                e.set(O_TUN_REMCSUM)?;
                e.dest.tun_checksum = TunnelChecksum::Remcsum;
            }
            _ => {
                return Err(fail(2, format!("invalid option `{}'", popt.bad_option())));
            }
        }
    }

    if e.cmd == Cmd::Timeout {
        let (Some(a), Some(b), Some(c)) = (popt.next_arg(), popt.next_arg(), popt.next_arg())
        else {
            return Err(fail(2, "--set option requires 3 timeout values"));
        };
        e.timeouts = Timeouts {
            tcp: parse_timeout(Some(&a), 0, MAX_TIMEOUT)?,
            tcp_fin: parse_timeout(Some(&b), 0, MAX_TIMEOUT)?,
            udp: parse_timeout(Some(&c), 0, MAX_TIMEOUT)?,
        };
    }
    if let Some(extra) = popt.next_arg() {
        return Err(fail(2, format!("unexpected argument {extra}")));
    }
    if !sched_flags_arg.is_empty() {
        e.svc.flags = parse_sched_flags(&e.svc.sched_name, &sched_flags_arg)?;
    }
    process(e, program, in_restore, json)
}

fn truncate_bytes(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// ipvsadm's `generic_opt_check`.
fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), Failure> {
    let i = cmd as usize;
    let row = &COMMANDS_V_OPTIONS[i];
    let mut last = 0;
    let mut count = 0;
    for (j, &rule) in row.iter().enumerate() {
        if options & (1 << j) == 0 {
            if rule == b'+' {
                return Err(fail(
                    2,
                    format!(
                        "You need to supply the '{}' option for the '{}' command",
                        OPT_NAMES[j], CMD_NAMES[i]
                    ),
                ));
            }
        } else {
            if rule == b'x' {
                return Err(fail(
                    2,
                    format!(
                        "Illegal '{}' option with the '{}' command",
                        OPT_NAMES[j], CMD_NAMES[i]
                    ),
                ));
            }
            if rule == b'1' {
                count += 1;
                if count == 1 {
                    last = j;
                    continue;
                }
                return Err(fail(
                    2,
                    format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        OPT_NAMES[j], OPT_NAMES[last], CMD_NAMES[i]
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// ipvsadm's `tunnel_opt_check`.
fn tunnel_opt_check(tun_type: usize, options: u64) -> Result<(), Failure> {
    let row = &TUNNEL_TYPES_V_OPTIONS[tun_type];
    let name = TUN_NAMES[tun_type];
    let mut last = 0;
    let mut count = 0;
    for (j, &k) in TUN_OPTS.iter().enumerate() {
        if options & (1 << k) == 0 {
            if row[j] == b'+' {
                return Err(fail(
                    2,
                    format!(
                        "You need to supply the '{}' option for the '{name}' tunnel type",
                        OPT_NAMES[k]
                    ),
                ));
            }
        } else {
            if row[j] == b'x' {
                return Err(fail(
                    2,
                    format!(
                        "Illegal '{}' option with the '{name}' tunnel type",
                        OPT_NAMES[k]
                    ),
                ));
            }
            if row[j] == b'1' {
                count += 1;
                if count == 1 {
                    last = k;
                    continue;
                }
                return Err(fail(
                    2,
                    format!(
                        "The option '{}' conflicts with the '{}' option in the '{name}' tunnel type",
                        OPT_NAMES[k], OPT_NAMES[last]
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// ipvsadm's message when the kernel knows no such scheduler or persistence engine.
pub const NO_SCHEDULER: &str = "Scheduler or persistence engine not found";

/// The service a command names, or what kind of service rvs does not have (fwmark,
/// SCTP, IPv6): such a service never exists in rvs, so commands that look one up get
/// ipvsadm's own answer for a missing service, and only adding one says "not supported".
fn service_id(svc: &Svc) -> Result<ServiceId, &'static str> {
    if svc.fwmark != 0 {
        if svc.ipv6_fwmark {
            return Err("IPv6 fwmark services (-f with -6)");
        }
        // rvs's identity of an fwmark service (see VirtualService::id).
        return Ok(ServiceId {
            protocol: Protocol::Tcp,
            address: Ipv4Addr::from(svc.fwmark),
            port: 0,
        });
    }
    let protocol = match svc.protocol {
        Some(Proto::Tcp) => Protocol::Tcp,
        Some(Proto::Udp) => Protocol::Udp,
        Some(Proto::Sctp) => return Err("SCTP services (--sctp-service)"),
        None => return Err("services without an address"),
    };
    match svc.addr {
        Some(IpAddr::V4(address)) => Ok(ServiceId {
            protocol,
            address,
            port: svc.port,
        }),
        Some(IpAddr::V6(_)) => Err("IPv6 services"),
        None => Err("services without an address"),
    }
}

/// The service of a command that needs it to exist; `message` and `code` are ipvsadm's
/// answer when it does not.
fn existing_service(svc: &Svc, message: &str, code: i32) -> Result<ServiceId, Failure> {
    service_id(svc).map_err(|_| fail(code, message))
}

/// The whole service of `-A`/`-E`.
fn virtual_service(svc: &Svc, adding: bool) -> Result<VirtualService, Failure> {
    let id = match service_id(svc) {
        Ok(id) => id,
        Err(what) if adding => {
            return Err(fail(255, format!("{what} are not supported by rvs yet")));
        }
        Err(_) => return Err(fail(255, "No such service")),
    };
    let scheduler = Scheduler::from_name(&svc.sched_name).ok_or_else(|| fail(255, NO_SCHEDULER))?;
    if !svc.pe_name.is_empty() {
        // rvs has no persistence engine: the kernel's answer for one it does not have.
        return Err(fail(255, NO_SCHEDULER));
    }
    let mut s = if svc.fwmark != 0 {
        VirtualService::fwmark(svc.fwmark)
    } else {
        VirtualService::new(id.protocol, id.address, id.port)
    };
    s.scheduler = scheduler;
    for (bit, flag) in [
        (SCHED1, SchedFlag::Flag1),
        (SCHED2, SchedFlag::Flag2),
        (SCHED3, SchedFlag::Flag3),
    ] {
        if svc.flags & bit != 0 {
            s.sched_flags.push(flag);
        }
    }
    if svc.persistent {
        s.persistence = Some(Persistence {
            timeout: svc.timeout,
            netmask: Ipv4Addr::from(svc.netmask),
        });
    }
    s.one_packet = svc.one_packet;
    Ok(s)
}

/// The real server of `-a`/`-e`.
fn real_server(svc: &Svc, dest: &Dest) -> Result<RealServer, Failure> {
    let address = match dest.addr {
        Some(IpAddr::V4(a)) => a,
        _ => return Err(fail(255, "IPv6 real servers are not supported by rvs yet")),
    };
    // IPVS refuses a lower threshold above the upper one (even with no upper threshold)
    // with ERANGE; ipvsadm prints strerror's text. Checked here so rvsadm answers alike.
    if dest.l_threshold > dest.u_threshold {
        return Err(fail(255, "Numerical result out of range"));
    }
    // ipvsadm's option checks (done before this) allow exactly the combinations that
    // `Tunnel::problem` accepts, so the tunnel is valid here.
    let tunnel = Tunnel {
        kind: [TunnelType::Ipip, TunnelType::Gue, TunnelType::Gre][dest.tun_type],
        port: (dest.tun_port != 0).then_some(dest.tun_port),
        checksum: dest.tun_checksum,
    };
    Ok(RealServer {
        address,
        port: (dest.port != svc.port).then_some(dest.port),
        weight: dest.weight,
        forward: match dest.fwd {
            Fwd::Route => ForwardMethod::Dr,
            Fwd::Tunnel => ForwardMethod::Tun,
            Fwd::Masq => ForwardMethod::Nat,
        },
        tunnel,
        u_threshold: dest.u_threshold,
        l_threshold: dest.l_threshold,
    })
}

/// ipvsadm's `process_options` after parsing: the checks, then the invocation.
fn process(
    mut e: Entry,
    program: &str,
    in_restore: bool,
    json: bool,
) -> Result<Invocation, Failure> {
    generic_opt_check(e.cmd, e.options)?;
    if json && e.cmd != Cmd::List {
        return Err(fail(
            2,
            format!(
                "Illegal 'json' option with the '{}' command",
                CMD_NAMES[e.cmd as usize]
            ),
        ));
    }
    if matches!(e.cmd, Cmd::Add | Cmd::Edit) {
        if e.svc.fwmark == 0 && e.svc.port == 0 && !e.svc.persistent {
            return Err(fail(2, "Zero port specified for non-persistent service"));
        }
        if e.svc.one_packet && e.svc.fwmark == 0 && e.svc.protocol != Some(Proto::Udp) {
            return Err(fail(
                2,
                "One-Packet Scheduling is only for UDP virtual services",
            ));
        }
        if e.svc.sched_name.is_empty() {
            e.svc.sched_name = DEFAULT_SCHEDULER.to_string();
        }
    }
    if matches!(e.cmd, Cmd::AddDest | Cmd::EditDest) {
        if e.svc.fwmark == 0 && matches!(e.dest.fwd, Fwd::Tunnel | Fwd::Route) {
            e.dest.port = e.svc.port;
        }
        let svc_v6 = e.svc.ipv6_fwmark || matches!(e.svc.addr, Some(IpAddr::V6(_)));
        let dest_v6 = matches!(e.dest.addr, Some(IpAddr::V6(_)));
        if svc_v6 != dest_v6 && e.dest.fwd != Fwd::Tunnel {
            return Err(fail(
                2,
                "Different address family is allowed only for tunneling servers",
            ));
        }
        let tunnel_options = [
            O_TUN_TYPE,
            O_TUN_PORT,
            O_TUN_NOCSUM,
            O_TUN_CSUM,
            O_TUN_REMCSUM,
        ]
        .iter()
        .any(|&o| e.has(o));
        if tunnel_options && e.dest.fwd != Fwd::Tunnel {
            return Err(fail(2, "Tunnel options conflict with forward method"));
        }
        tunnel_opt_check(e.dest.tun_type, e.options)?;
    }
    let op = match e.cmd {
        Cmd::List => {
            let any = |os: &[usize]| os.iter().any(|&o| e.has(o));
            if (any(&[O_CONNECTION, O_TIMEOUT, O_DAEMON]) && any(&[O_STATS, O_RATE, O_THRESHOLDS]))
                || (any(&[O_TIMEOUT, O_DAEMON]) && e.has(O_PERSISTENTCONN))
            {
                return Err(fail(2, "options conflicts in the list command"));
            }
            let target = if e.has(O_CONNECTION) {
                ListTarget::Connections
            } else if e.has(O_SERVICE) {
                ListTarget::Service(existing_service(&e.svc, "No such service", 1)?)
            } else if e.has(O_TIMEOUT) {
                ListTarget::Timeouts
            } else if e.has(O_DAEMON) {
                ListTarget::Daemons
            } else {
                ListTarget::All
            };
            return Ok(Invocation::List(ListRequest {
                target,
                format: e.format,
                json,
            }));
        }
        Cmd::Restore => {
            if in_restore {
                return Err(tryhelp(program));
            }
            return Ok(Invocation::Restore);
        }
        Cmd::Save => {
            return Ok(Invocation::Save {
                numeric: e.format.numeric,
            });
        }
        Cmd::Flush => Op::Clear,
        Cmd::Add => Op::AddService {
            service: virtual_service(&e.svc, true)?,
        },
        Cmd::Edit => Op::EditService {
            service: virtual_service(&e.svc, false)?,
        },
        Cmd::Del => Op::DeleteService {
            service: existing_service(&e.svc, "No such service", 255)?,
        },
        Cmd::Zero => Op::Zero {
            service: if e.has(O_SERVICE) {
                Some(existing_service(&e.svc, "No such service", 255)?)
            } else {
                None
            },
        },
        Cmd::AddDest => Op::AddReal {
            service: existing_service(&e.svc, "Service not defined", 255)?,
            real: real_server(&e.svc, &e.dest)?,
        },
        Cmd::EditDest => Op::EditReal {
            service: existing_service(&e.svc, "Service not defined", 255)?,
            real: real_server(&e.svc, &e.dest)?,
        },
        Cmd::DelDest => {
            let service = existing_service(&e.svc, "Service not defined", 255)?;
            let Some(IpAddr::V4(address)) = e.dest.addr else {
                return Err(fail(255, "IPv6 real servers are not supported by rvs yet"));
            };
            Op::DeleteReal {
                service,
                address,
                port: (e.dest.port != e.svc.port).then_some(e.dest.port),
            }
        }
        Cmd::Timeout => Op::SetTimeouts {
            timeouts: e.timeouts,
        },
        Cmd::StartDaemon => {
            if e.sync.group_v6 {
                return Err(fail(
                    255,
                    "an IPv6 sync multicast group is not supported by rvs yet",
                ));
            }
            // Without --mcast-interface the kernel finds no device, as for a wrong one.
            return Ok(Invocation::StartDaemon(rvs_api::SyncDaemonConfig {
                role: if e.sync.backup {
                    rvs_api::SyncRole::Backup
                } else {
                    rvs_api::SyncRole::Master
                },
                interface: e.sync.interface.clone().unwrap_or_default(),
                syncid: e.sync.syncid,
                maxlen: e.sync.maxlen,
                group: e.sync.group,
                port: e.sync.port,
                ttl: e.sync.ttl,
            }));
        }
        Cmd::StopDaemon => {
            return Ok(Invocation::StopDaemon(if e.sync.backup {
                rvs_api::SyncRole::Backup
            } else {
                rvs_api::SyncRole::Master
            }));
        }
    };
    Ok(Invocation::Apply(op))
}
