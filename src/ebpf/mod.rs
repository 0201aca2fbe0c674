//! Packets in, kernel side: loads the TC program (`ebpf/dae_tc.c`) with aya
//! and attaches it on ingress of every LAN interface, and installs the
//! policy routing that delivers handed-over packets to our transparent
//! listener.
//!
//! The program comes built into the binary (build.rs compiles it for the
//! target's byte order), or from the file `option bpf_object` names; a
//! binary built with `DAE_EMBED_BPF=0` has none of its own and reads
//! `/lib/bpf/dae_tc.o` when the option is not set (`Object::choose`).
//!
//! The program is attached as a classic netlink TC filter (named after the
//! program), which works on every kernel from 5.10 and stays in place if the
//! daemon dies: the program itself then passes traffic (fail open) or drops
//! DNS (fail closed), as `Settings::fail_closed` says. Start removes any
//! filter of ours left by a crashed run, so each interface ends with exactly
//! one; stop removes the filters and the routing entries.
//!
//! Neighbours: `shared` (the map types), `route` (policy routing),
//! `listener::tproxy` (the sockets the program hands packets to), `daemon`.

pub mod route;
pub mod shared;

use std::path::{Path, PathBuf};

use aya::maps::{Array, PerCpuArray};
use aya::programs::tc::{self, NlOptions, SchedClassifier, TcAttachOptions, TcAttachType};
use aya::programs::{Link, LinkOrder};
use aya::Ebpf;

pub use shared::{Counter, Settings};

/// The TC object build.rs compiled for this target; empty when built with
/// `DAE_EMBED_BPF=0`. Aligned to 8 bytes, as the ELF parser needs.
static EMBEDDED: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dae_tc.o"));

/// Where a binary built without its own object looks when `bpf_object`
/// is not set: where the OpenWrt package installs the object.
pub const PACKAGE_OBJECT: &str = "/lib/bpf/dae_tc.o";

/// Which TC object to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// The one built into this binary.
    Embedded,
    /// A file (`option bpf_object`, or the package's).
    File(PathBuf),
}

impl Object {
    /// The object for `option bpf_object` (None: not set). Fails, saying
    /// what to do, when the file named is missing or when the option is not
    /// set and neither the binary nor the package has an object.
    pub fn choose(option: Option<&Path>) -> Result<Object, String> {
        match option {
            Some(path) if !path.exists() => Err(format!(
                "option bpf_object: no such file: {} (the TC program, ebpf/dae_tc.c \
                 compiled; without the option dae uses the one built into it)",
                path.display()
            )),
            Some(path) => Ok(Object::File(path.to_path_buf())),
            None if !EMBEDDED.is_empty() => Ok(Object::Embedded),
            None if Path::new(PACKAGE_OBJECT).exists() => {
                Ok(Object::File(PathBuf::from(PACKAGE_OBJECT)))
            }
            None => Err(format!(
                "option bpf_object: not set, and this dae was built without its TC \
                 program (DAE_EMBED_BPF=0) and there is no such file: {PACKAGE_OBJECT}; \
                 set the option to the compiled ebpf/dae_tc.c (ebpf/build.sh builds it)"
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Object::Embedded => "the built-in eBPF object".into(),
            Object::File(path) => format!("eBPF object {}", path.display()),
        }
    }
}

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// A netlink TC filter: kernels from 4.1; stays if the daemon dies.
    Netlink,
    /// A TCX link: kernels from 6.6; goes away with the daemon.
    Tcx,
}

/// The loaded program, attached to a set of interfaces.
pub struct Datapath {
    ebpf: Ebpf,
    attached: Vec<(String, tc::SchedClassifierLinkId)>,
    mode: AttachMode,
    /// The settings in force, `routing_slot` included.
    settings: Settings,
}

fn program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, String> {
    ebpf.program_mut(shared::PROGRAM_NAME)
        .ok_or_else(|| format!("the eBPF object has no program '{}'", shared::PROGRAM_NAME))?
        .try_into()
        .map_err(|e| format!("program '{}': {e}", shared::PROGRAM_NAME))
}

/// Reads and parses the object, on a thread of its own that cannot see
/// the kernel's own BTF.
///
/// aya's loader parses `/sys/kernel/btf/vmlinux` (about 5 MB of types, 30
/// MB of heap while parsed) as soon as it is made, though our program has
/// no CO-RE relocation and needs none of it: on a kernel with BTF that was
/// dae's peak memory (VmHWM 35 MB against 5 MB resident), paid at every
/// start by routers with 128 MB of RAM. aya has no way to skip it, so the
/// loading thread gets a mount namespace of its own where that file is
/// empty (`hide_kernel_btf`); the loader then finds no kernel BTF, as on
/// OpenWrt's kernels, which are built without it. Where that cannot be
/// done (no CAP_SYS_ADMIN) the load goes on with the parse.
///
/// The thread also keeps the load's many small blocks out of the daemon's
/// heap: glibc serves them from another arena, which
/// `give_back_load_memory` empties whole.
fn load_object(object: &Object) -> Result<Ebpf, String> {
    let failed = |e: &dyn std::fmt::Display| format!("cannot load {}: {e}", object.describe());
    let load = || {
        if let Err(e) = hide_kernel_btf() {
            log::debug!("the kernel's BTF stays visible to the loader: {e}");
        }
        match object {
            Object::Embedded => Ebpf::load(EMBEDDED),
            Object::File(path) => Ebpf::load_file(path),
        }
    };
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("dae-ebpf-load".into())
            .spawn_scoped(s, || load().map_err(|e| failed(&e)))
            .map_err(|e| failed(&e))?
            .join()
            .map_err(|_| failed(&"the loading thread panicked"))?
    })
}

/// The kernel's BTF, which aya's loader reads when it is made.
const KERNEL_BTF: &std::ffi::CStr = c"/sys/kernel/btf/vmlinux";

/// Gives the calling thread a mount namespace of its own in which the
/// kernel's BTF is an empty file. Mounts made there are private: nothing
/// of it reaches the rest of the system, and it goes with the thread.
fn hide_kernel_btf() -> std::io::Result<()> {
    let check = |rc: libc::c_int| match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    };
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::OsStr::from_bytes(KERNEL_BTF.to_bytes());
    if !std::path::Path::new(path).exists() {
        return Ok(());
    }
    // SAFETY: plain system calls on C strings that outlive them. unshare
    // with CLONE_NEWNS (which implies CLONE_FS) affects only the calling
    // thread, the short-lived loading thread.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            c"/dev/null".as_ptr(),
            KERNEL_BTF.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))
    }
}

/// glibc keeps the pages the load freed; hand them back so the daemon's
/// resident size is what it serves with. (musl returns freed memory by
/// itself.)
fn give_back_load_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Where the netlink filter sits on an interface's ingress: a fixed
/// priority and handle, so that a filter left by a crashed run is found
/// on any kernel. By name alone it is not found on kernels without the
/// BPF tracing program types (OpenWrt's, without perf events): aya probes
/// program names with a tracepoint program, and where that probe fails it
/// loads the program, and attaches the filter, without a name (the mipsel
/// VM, openwrt/vm-test.sh, showed the stale filter staying).
const FILTER_PRIORITY: u16 = 0x0dae;
const FILTER_HANDLE: tc::TcHandle = tc::TcHandle::new(0, 0x0dae);

/// Removes filters of ours left on `iface` by an earlier run: the one at
/// our place, and any named as our program (from runs that let the kernel
/// choose the place).
fn remove_stale(iface: &str) {
    let at_place = tc::SchedClassifierLink::attached(
        iface,
        TcAttachType::Ingress,
        FILTER_PRIORITY,
        FILTER_HANDLE,
        None,
    )
    .map_err(|e| e.to_string())
    .and_then(|link| link.detach().map_err(|e| e.to_string()));
    match at_place {
        Ok(()) => log::info!("{iface}: removed a TC filter left by an earlier run"),
        // No filter there (ENOENT), or no clsact qdisc yet (EINVAL).
        Err(e) => log::debug!("{iface}: no old filter at our place: {e}"),
    }
    match tc::qdisc_detach_program(iface, TcAttachType::Ingress, shared::PROGRAM_NAME) {
        Ok(()) => log::info!("{iface}: removed a TC filter left by an earlier run"),
        Err(tc::TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::debug!("{iface}: looking for old filters: {e}"),
    }
}

impl Datapath {
    /// Loads `object`, sets the program's settings, installs policy
    /// routing, and attaches to every interface in `ifaces`.
    pub fn start(
        object: &Object,
        ifaces: &[String],
        settings: Settings,
        mode: AttachMode,
    ) -> Result<Datapath, String> {
        let mut dp = Datapath::load(object, settings, mode)?;
        route::install().map_err(|e| format!("policy routing: {e}"))?;
        for iface in ifaces {
            if let Err(e) = dp.attach(iface) {
                dp.stop();
                return Err(e);
            }
        }
        give_back_load_memory();
        Ok(dp)
    }

    /// Loads `object` into the kernel with `settings`, attached nowhere
    /// (`start` attaches it; tests run it on packets).
    pub fn load(object: &Object, settings: Settings, mode: AttachMode) -> Result<Datapath, String> {
        let ebpf = load_object(object)?;
        let mut dp = Datapath {
            ebpf,
            attached: Vec::new(),
            mode,
            settings,
        };
        dp.set_settings(settings)?;
        program(&mut dp.ebpf)?
            .load()
            .map_err(|e| format!("the kernel refused the TC program: {e}"))?;
        Ok(dp)
    }

    /// Runs the loaded program once on the Ethernet frame `frame`, as
    /// ingress would (the kernel's BPF_PROG_TEST_RUN), and returns its
    /// verdict (`TC_ACT_*`). For tests of the program's decisions.
    pub fn run_on(&mut self, frame: &[u8]) -> Result<u32, String> {
        use std::os::fd::{AsFd, AsRawFd};
        let prog = program(&mut self.ebpf)?;
        let fd = prog
            .fd()
            .map_err(|e| format!("program fd: {e}"))?
            .as_fd()
            .as_raw_fd();
        // The test-run part of `union bpf_attr`.
        #[repr(C)]
        #[derive(Default)]
        struct TestRun {
            prog_fd: u32,
            retval: u32,
            data_size_in: u32,
            data_size_out: u32,
            data_in: u64,
            data_out: u64,
            repeat: u32,
            duration: u32,
            ctx_size_in: u32,
            ctx_size_out: u32,
            ctx_in: u64,
            ctx_out: u64,
            flags: u32,
            cpu: u32,
            batch_size: u32,
            // Explicit, so it is zero: the kernel refuses non-zero bytes
            // past the fields it knows.
            padding: u32,
        }
        const BPF_PROG_TEST_RUN: libc::c_long = 10;
        let mut attr = TestRun {
            prog_fd: fd as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..TestRun::default()
        };
        // SAFETY: attr is a valid bpf_attr prefix of the size passed; the
        // kernel reads `frame` and writes only into attr.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRun,
                std::mem::size_of::<TestRun>() as u32,
            )
        };
        if rc < 0 {
            return Err(format!(
                "BPF_PROG_TEST_RUN: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(attr.retval)
    }

    fn attach(&mut self, iface: &str) -> Result<(), String> {
        remove_stale(iface);
        if let Err(e) = tc::qdisc_add_clsact(iface) {
            // EEXIST: a clsact qdisc is already there (ours or another
            // program's); that is what we need.
            let exists = matches!(&e, tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST));
            if !exists {
                return Err(format!("{iface}: cannot add the clsact qdisc: {e}"));
            }
        }
        let options = match self.mode {
            AttachMode::Netlink => TcAttachOptions::Netlink(NlOptions {
                priority: FILTER_PRIORITY,
                handle: FILTER_HANDLE,
                ..NlOptions::default()
            }),
            AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
        };
        let id = program(&mut self.ebpf)?
            .attach_with_options(iface, TcAttachType::Ingress, options)
            .map_err(|e| format!("{iface}: cannot attach the TC program: {e}"))?;
        log::info!("{iface}: TC program attached on ingress ({:?})", self.mode);
        self.attached.push((iface.to_string(), id));
        Ok(())
    }

    fn detach(&mut self, iface: &str) {
        if let Some(pos) = self.attached.iter().position(|(i, _)| i == iface) {
            let (_, id) = self.attached.remove(pos);
            if let Ok(p) = program(&mut self.ebpf) {
                if let Err(e) = p.detach(id) {
                    log::warn!("{iface}: detaching the TC program: {e}");
                }
            }
            log::info!("{iface}: TC program detached");
        }
    }

    /// Makes the attached set exactly `ifaces` (for reload).
    pub fn set_interfaces(&mut self, ifaces: &[String]) -> Result<(), String> {
        let gone: Vec<String> = self
            .attached
            .iter()
            .map(|(i, _)| i.clone())
            .filter(|i| !ifaces.contains(i))
            .collect();
        for iface in gone {
            self.detach(&iface);
        }
        for iface in ifaces {
            if !self.attached.iter().any(|(i, _)| i == iface) {
                self.attach(iface)?;
            }
        }
        Ok(())
    }

    pub fn interfaces(&self) -> Vec<String> {
        self.attached.iter().map(|(i, _)| i.clone()).collect()
    }

    /// Sets the program's settings; the routing slot in force stays.
    pub fn set_settings(&mut self, mut settings: Settings) -> Result<(), String> {
        settings.routing_slot = self.settings.routing_slot;
        self.write_settings(settings)
    }

    /// Puts routing slot `slot` in force (`routing::kernel` filled it).
    pub fn set_routing_slot(&mut self, slot: u32) -> Result<(), String> {
        self.write_settings(Settings {
            routing_slot: slot,
            ..self.settings
        })
    }

    pub fn routing_slot(&self) -> u32 {
        self.settings.routing_slot
    }

    /// One of the object's maps, by name (`shared::*_MAP`).
    pub fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map, String> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| format!("the eBPF object has no map '{name}'"))
    }

    /// Takes one of the object's maps out, for a user that keeps it (the
    /// learned domains, the flows).
    pub fn take_map(&mut self, name: &str) -> Result<aya::maps::Map, String> {
        self.ebpf
            .take_map(name)
            .ok_or_else(|| format!("the eBPF object has no map '{name}' (or it was taken)"))
    }

    fn write_settings(&mut self, settings: Settings) -> Result<(), String> {
        let map = self
            .ebpf
            .map_mut(shared::SETTINGS_MAP)
            .ok_or_else(|| format!("the eBPF object has no map '{}'", shared::SETTINGS_MAP))?;
        let mut array: Array<_, Settings> =
            Array::try_from(map).map_err(|e| format!("map '{}': {e}", shared::SETTINGS_MAP))?;
        array
            .set(0, settings, 0)
            .map_err(|e| format!("map '{}': {e}", shared::SETTINGS_MAP))?;
        self.settings = settings;
        Ok(())
    }

    /// The counters, summed over CPUs, in `Counter::ALL` order.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        let Some(map) = self.ebpf.map(shared::COUNTERS_MAP) else {
            return Vec::new();
        };
        let Ok(array) = PerCpuArray::<_, u64>::try_from(map) else {
            return Vec::new();
        };
        Counter::ALL
            .iter()
            .map(|&c| {
                let sum = array
                    .get(&(c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (c, sum)
            })
            .collect()
    }

    /// Detaches from every interface and removes the policy routing.
    pub fn stop(&mut self) {
        for iface in self.interfaces() {
            self.detach(&iface);
        }
        route::remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_object_is_an_aligned_bpf_elf_of_our_byte_order() {
        if EMBEDDED.is_empty() {
            return; // built with DAE_EMBED_BPF=0
        }
        assert_eq!(EMBEDDED.as_ptr() as usize % 8, 0, "8-byte aligned");
        assert_eq!(&EMBEDDED[..4], b"\x7fELF");
        // EI_DATA: 1 little-endian, 2 big-endian; e_machine 247 is BPF.
        let little = EMBEDDED[5] == 1;
        assert_eq!(little, cfg!(target_endian = "little"));
        let machine = if little {
            u16::from_le_bytes([EMBEDDED[18], EMBEDDED[19]])
        } else {
            u16::from_be_bytes([EMBEDDED[18], EMBEDDED[19]])
        };
        assert_eq!(machine, 247);
    }

    #[test]
    fn a_missing_bpf_object_is_named() {
        let e = Object::choose(Some(Path::new("/nonexistent/dae_tc.o"))).unwrap_err();
        assert!(e.starts_with("option bpf_object: no such file: /nonexistent/dae_tc.o"));
    }
}
