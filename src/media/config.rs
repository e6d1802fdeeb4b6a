//! The `[media]` config section (RFC 3960 early media: where our RTP comes from and may go), its
//! checks, and the early-media resources (`MediaSettings`) the call flow plays with, built from it.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::PortPool;
use super::destinations::{Caps, Destinations};
use super::ports::PortError;

/// Early-media resources.
pub struct MediaSettings {
    /// Where announcements are sent from; SIGHUP may change it for calls that start later.
    pub address: Arc<RwLock<IpAddr>>,
    pub ports: PortPool,
    /// How long a port and its socket stay held after playback (`flow::Calls` lingers).
    pub linger: Duration,
    /// Where RTP may go, and how many streams to one address (no reflection).
    pub destinations: Arc<Destinations>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address we bind RTP to and put into the SDP answer's c= line.
    #[serde(default = "default_address")]
    pub address: IpAddr,
    /// RTP port range (even ports are used); one port per announced call.
    #[serde(default = "default_port_min")]
    pub port_min: u16,
    #[serde(default = "default_port_max")]
    pub port_max: u16,
    /// The 183 is resent this often during long announcements, so carriers' provisional-response
    /// timers (often 60-180 s) do not fire.
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    /// How long an announcement's RTP port stays held after playback, so the caller's RTP that
    /// is still on its way cannot reach the next call on the same port (milliseconds).
    #[serde(default = "default_port_linger_ms")]
    pub port_linger_ms: u64,
    /// CIDRs our RTP may go to. An SDP naming an address outside them gets no announcement
    /// (the call goes on as one without SDP). Unset: the networks of `[sip.acl] allow`.
    #[serde(default)]
    pub allowed_networks: Option<Vec<IpNet>>,
    /// Announcements playing to one media address at once; past it a call goes on as one
    /// without SDP.
    #[serde(default = "default_max_streams_per_destination")]
    pub max_streams_per_destination: usize,
    /// Announcements playing at once for calls signalled from one address (the trunk peer that
    /// sent the INVITE); past it a call goes on as one without SDP.
    #[serde(default = "default_max_streams_per_source")]
    pub max_streams_per_source: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            address: default_address(),
            port_min: default_port_min(),
            port_max: default_port_max(),
            refresh_seconds: default_refresh_seconds(),
            port_linger_ms: default_port_linger_ms(),
            allowed_networks: None,
            max_streams_per_destination: default_max_streams_per_destination(),
            max_streams_per_source: default_max_streams_per_source(),
        }
    }
}
// A carrier's media gateway may carry every announced call; 2,000 G.711 streams are about
// 190 Mbit/s, the most one address can be made to receive from us.
fn default_max_streams_per_destination() -> usize {
    2000
}
// Two in five of the default 5,000 ports: a carrier's SBC sends all its calls from one address,
// so the cap must carry a whole trunk at full load, yet a burst or a signalling loop on one
// trunk peer still leaves most ports to the others.
fn default_max_streams_per_source() -> usize {
    2000
}
fn default_port_linger_ms() -> u64 {
    2000
}
fn default_address() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}
fn default_port_min() -> u16 {
    40000
}
fn default_port_max() -> u16 {
    44999
}
fn default_refresh_seconds() -> u64 {
    50
}

impl Settings {
    /// The networks RTP may go to, with the default (the trunk ACL's `allow`) applied.
    pub fn allowed_networks(&self, acl_allow: &[IpNet]) -> Vec<IpNet> {
        self.allowed_networks
            .clone()
            .unwrap_or_else(|| acl_allow.to_vec())
    }

    /// How often the 183 is resent during an announcement.
    pub fn refresh(&self) -> Duration {
        Duration::from_secs(self.refresh_seconds)
    }

    /// Problems as (key path relative to `[media]`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: &str| {
            problems.push((key.to_owned(), message.to_owned()));
        };
        if self.max_streams_per_destination == 0 {
            problem("max_streams_per_destination", "must be at least 1");
        }
        if self.max_streams_per_source == 0 {
            problem("max_streams_per_source", "must be at least 1");
        }
        if self.port_min < 1024 || self.port_min >= self.port_max {
            problem("port_min", "need 1024 <= port_min < port_max");
        }
        if self.refresh_seconds == 0 || self.refresh_seconds > 170 {
            problem("refresh_seconds", "must be 1..=170 (under Timer C)");
        }
        problems
    }

    /// The call flow's early-media resources: the port pool, the linger, and where RTP may go
    /// (`acl_allow` unless `allowed_networks` is set).
    pub fn build(&self, acl_allow: &[IpNet]) -> Result<MediaSettings, PortError> {
        Ok(MediaSettings {
            address: Arc::new(RwLock::new(self.address)),
            ports: PortPool::new(self.port_min..=self.port_max)?,
            linger: Duration::from_millis(self.port_linger_ms),
            destinations: Arc::new(Destinations::new(
                self.allowed_networks(acl_allow),
                Caps {
                    per_destination: self.max_streams_per_destination,
                    per_source: self.max_streams_per_source,
                },
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_build() {
        let default = Settings::default();
        assert!(default.validate().is_empty());
        assert!(default.build(&[]).is_ok());
    }

    #[test]
    fn problems_name_keys_relative_to_the_section() {
        let bad = Settings {
            port_min: 50000,
            refresh_seconds: 171,
            max_streams_per_destination: 0,
            max_streams_per_source: 0,
            ..Settings::default()
        };
        let keys: Vec<String> = bad.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "max_streams_per_destination",
                "max_streams_per_source",
                "port_min",
                "refresh_seconds"
            ]
        );
    }
}
