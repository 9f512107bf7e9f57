//! Ethernet ports: configure, queues, start/stop, link, stats.

use std::ffi::{CStr, CString};
use std::sync::Arc;

use crate::error::{check, Error, Result};
use crate::mempool::Mempool;
use crate::sys;

// RTE_ETH_RSS_* are function-like macros bindgen cannot export.
const RSS_IPV4: u64 = 1 << 2;
const RSS_FRAG_IPV4: u64 = 1 << 3;
const RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
const RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;
const RSS_IPV6: u64 = 1 << 8;
const RSS_FRAG_IPV6: u64 = 1 << 9;
const RSS_NONFRAG_IPV6_TCP: u64 = 1 << 10;
const RSS_NONFRAG_IPV6_UDP: u64 = 1 << 11;
const RSS_WANTED: u64 = RSS_IPV4
    | RSS_FRAG_IPV4
    | RSS_NONFRAG_IPV4_TCP
    | RSS_NONFRAG_IPV4_UDP
    | RSS_IPV6
    | RSS_FRAG_IPV6
    | RSS_NONFRAG_IPV6_TCP
    | RSS_NONFRAG_IPV6_UDP;

/// A Toeplitz key made of one repeated 16-bit word hashes (a, b) and (b, a)
/// alike, so both directions of a flow land on the same queue index
/// (Woo & Park, "Scalable TCP Session Monitoring with Symmetric RSS").
static SYMMETRIC_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d,
    0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a,
];

/// How to set a port up.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// A bump in the wire sees frames for every MAC: on by default.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 1024, tx_desc: 1024, promiscuous: true }
    }
}

/// What the device says about itself.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// The device hashes flows to queues in hardware.
    pub rss: bool,
    pub socket: i32,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
}

/// Device counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the device: rx queue full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// Rx failures for want of an mbuf.
    pub rx_nombuf: u64,
}

/// A configured port. Stopped and closed on drop.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    info: PortInfo,
    rss_enabled: bool,
    started: bool,
    closed: bool,
    // Keeps the pool alive while the device can still receive into it.
    _pool: Arc<Mempool>,
}

/// The port id of a device name (`net_af_packet0`, `0000:3b:00.0`, …).
pub fn port_id(name: &str) -> Result<u16> {
    let cname = CString::new(name).map_err(|_| Error::NoSuchPort(name.to_owned()))?;
    let mut id = 0u16;
    // SAFETY: valid C string and out-pointer.
    let ret = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    if ret < 0 {
        return Err(Error::NoSuchPort(name.to_owned()));
    }
    Ok(id)
}

/// Device information for a port id.
pub fn port_info(id: u16) -> Result<PortInfo> {
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: valid port id is checked by the call; info is a valid out-pointer.
    check("rte_eth_dev_info_get", unsafe { sys::rte_eth_dev_info_get(id, &mut info) })?;
    let driver = if info.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: the driver name is a static NUL-terminated string owned by the PMD.
        unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
    };
    // SAFETY: plain getter.
    let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
    Ok(PortInfo {
        driver,
        max_rx_queues: info.max_rx_queues,
        max_tx_queues: info.max_tx_queues,
        rss: info.flow_type_rss_offloads & RSS_WANTED != 0,
        socket,
    })
}

impl Port {
    /// Finds the device `name`, configures its queues (receiving into `pool`)
    /// and, where the device hashes in hardware, symmetric RSS. Does not start it.
    pub fn configure(name: &str, cfg: &PortConfig, pool: Arc<Mempool>) -> Result<Port> {
        let id = port_id(name)?;
        let info = port_info(id)?;
        if cfg.rx_queues == 0 || cfg.rx_queues > info.max_rx_queues {
            return Err(Error::InvalidArgument(format!(
                "port {name}: {} rx queues requested, the device ({}) has {}",
                cfg.rx_queues, info.driver, info.max_rx_queues
            )));
        }
        if cfg.tx_queues == 0 || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::InvalidArgument(format!(
                "port {name}: {} tx queues requested, the device ({}) has {}",
                cfg.tx_queues, info.driver, info.max_tx_queues
            )));
        }
        let mut conf = sys::rte_eth_conf::default();
        let mut dev_info = sys::rte_eth_dev_info::default();
        // SAFETY: as in port_info.
        check("rte_eth_dev_info_get", unsafe { sys::rte_eth_dev_info_get(id, &mut dev_info) })?;
        let rss_hf = dev_info.flow_type_rss_offloads & RSS_WANTED;
        let rss_enabled = cfg.rx_queues > 1 && rss_hf != 0;
        if rss_enabled {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = SYMMETRIC_RSS_KEY.as_ptr() as *mut u8;
            conf.rx_adv_conf.rss_conf.rss_key_len = SYMMETRIC_RSS_KEY.len() as u8;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: conf is valid for the call (the key is 'static; DPDK copies it).
        check("rte_eth_dev_configure", unsafe { sys::rte_eth_dev_configure(id, cfg.rx_queues, cfg.tx_queues, &conf) })?;
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid out-pointers; the call clamps to the device's limits.
        check("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc)
        })?;
        let socket = if info.socket < 0 { 0 } else { info.socket as u32 };
        for q in 0..cfg.rx_queues {
            // SAFETY: a configured port, queue index in range, default queue conf (NULL), a live pool.
            check("rte_eth_rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(id, q, rx_desc, socket, std::ptr::null(), pool.as_ptr())
            })?;
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: as above.
            check("rte_eth_tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null())
            })?;
        }
        if cfg.promiscuous {
            // Some virtual devices cannot change it and say so; that is harmless.
            // SAFETY: a configured port.
            let _ = unsafe { sys::rte_eth_promiscuous_enable(id) };
        }
        Ok(Port { id, name: name.to_owned(), info, rss_enabled, started: false, closed: false, _pool: pool })
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn info(&self) -> &PortInfo {
        &self.info
    }

    /// Whether symmetric RSS was set up (more than one rx queue and a device that hashes).
    pub fn rss_enabled(&self) -> bool {
        self.rss_enabled
    }

    pub fn start(&mut self) -> Result<()> {
        // SAFETY: a configured port.
        check("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(self.id) })?;
        self.started = true;
        Ok(())
    }

    pub fn stop(&mut self) -> Result<()> {
        if self.started {
            self.started = false;
            // SAFETY: a started port; no worker polls it any more (caller's contract).
            check("rte_eth_dev_stop", unsafe { sys::rte_eth_dev_stop(self.id) })?;
        }
        Ok(())
    }

    /// Stops and closes the device: it gives back every mbuf it held (receive
    /// descriptors, a pcap device's preloaded frames). The port is unusable
    /// after; dropping it does nothing more.
    pub fn close(&mut self) {
        let _ = self.stop();
        if !self.closed {
            self.closed = true;
            // SAFETY: the port is stopped and nobody polls it.
            unsafe { sys::rte_eth_dev_close(self.id) };
        }
    }

    pub fn link(&self) -> Link {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid port and out-pointer; the nowait variant does not block.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) };
        if ret < 0 {
            return Link { up: false, speed_mbps: 0 };
        }
        Link { up: link.link_status() != 0, speed_mbps: link.link_speed }
    }

    pub fn stats(&self) -> PortStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        if unsafe { sys::rte_eth_stats_get(self.id, &mut s) } < 0 {
            return PortStats::default();
        }
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.close();
    }
}
