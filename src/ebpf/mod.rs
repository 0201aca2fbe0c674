//! Packets in, kernel side: loads the TC program (`ebpf/dae_tc.c`, built by
//! `ebpf/build.sh`) with aya and attaches it on ingress of every LAN
//! interface, and installs the policy routing that delivers handed-over
//! packets to our transparent listener.
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

use std::path::Path;

use aya::maps::{Array, PerCpuArray};
use aya::programs::tc::{self, NlOptions, SchedClassifier, TcAttachOptions, TcAttachType};
use aya::programs::LinkOrder;
use aya::Ebpf;

pub use shared::{Counter, Settings};

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

/// Reads and parses the object, on a thread of its own. aya parses the
/// kernel's own BTF (`/sys/kernel/btf/vmlinux`, some MB of types; OpenWrt
/// kernels have none) while it loads, though our program needs none of it.
/// On the daemon's thread its many small blocks were freed among the ones
/// the daemon keeps, and the holes stayed resident as the cache filled
/// them: after the lab's misses dae had 2.4 MB of anon against 1.4 MB on
/// loopback (bench/lab.sh; 1.6 MB now). On its own thread glibc serves it
/// from another arena, which `give_back_load_memory` empties whole.
fn load_object(object: &Path) -> Result<Ebpf, String> {
    let failed =
        |e: &dyn std::fmt::Display| format!("cannot load eBPF object {}: {e}", object.display());
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("dae-ebpf-load".into())
            .spawn_scoped(s, || Ebpf::load_file(object).map_err(|e| failed(&e)))
            .map_err(|e| failed(&e))?
            .join()
            .map_err(|_| failed(&"the loading thread panicked"))?
    })
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

/// Removes filters of ours left on `iface` by an earlier run.
fn remove_stale(iface: &str) {
    match tc::qdisc_detach_program(iface, TcAttachType::Ingress, shared::PROGRAM_NAME) {
        Ok(()) => log::info!("{iface}: removed a TC filter left by an earlier run"),
        Err(tc::TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::debug!("{iface}: looking for old filters: {e}"),
    }
}

impl Datapath {
    /// Loads the object at `object`, sets the program's settings, installs
    /// policy routing, and attaches to every interface in `ifaces`.
    pub fn start(
        object: &Path,
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

    /// Loads the object at `object` into the kernel with `settings`,
    /// attached nowhere (`start` attaches it; tests run it on packets).
    pub fn load(object: &Path, settings: Settings, mode: AttachMode) -> Result<Datapath, String> {
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
            AttachMode::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
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
