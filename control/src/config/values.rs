//! Values that several sections share: IPv4 and IPv6 prefixes ([`Cidr`], [`Cidr6`]) and the
//! serde forms of a MAC, an address or prefix of either family, and a driver name.

use super::*;

/// An IPv4 address with a prefix length, `10.0.0.1/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub address: Ipv4Addr,
    /// 0..=32.
    pub prefix_len: u8,
}

impl Cidr {
    /// The netmask as a host-order integer (`/16` => `0xffff_0000`).
    pub fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The same prefix with the host bits cleared (`10.0.0.1/16` => `10.0.0.0/16`).
    pub fn network(&self) -> Cidr {
        Cidr {
            address: Ipv4Addr::from(u32::from(self.address) & self.mask()),
            prefix_len: self.prefix_len,
        }
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.address) & self.mask())
    }
}

/// Error of [`Cidr::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidrParseError(pub(crate) String);

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| {
            CidrParseError(format!(
                "invalid IPv4 CIDR `{s}`: {why} (expected e.g. `10.0.0.1/16`)"
            ))
        };
        let (addr, len) = s.split_once('/').ok_or_else(|| err("missing `/prefix`"))?;
        let address: Ipv4Addr = addr.parse().map_err(|_| err("bad IPv4 address"))?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 2 {
            return Err(err("bad prefix length"));
        }
        let prefix_len: u8 = len.parse().map_err(|_| err("bad prefix length"))?;
        if prefix_len > 32 {
            return Err(err("prefix length must be 0..=32"));
        }
        Ok(Cidr {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// An IPv6 address with a prefix length, `fd00::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr6 {
    pub address: Ipv6Addr,
    /// 0..=128.
    pub prefix_len: u8,
}

impl Cidr6 {
    /// The netmask as an integer (`/64` => the upper 64 bits set).
    pub fn mask(&self) -> u128 {
        if self.prefix_len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix_len.min(128)))
        }
    }

    /// The same prefix with the host bits cleared (`fd00::1/64` => `fd00::/64`).
    pub fn network(&self) -> Cidr6 {
        Cidr6 {
            address: Ipv6Addr::from(u128::from(self.address) & self.mask()),
            prefix_len: self.prefix_len,
        }
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        (u128::from(ip) & self.mask()) == (u128::from(self.address) & self.mask())
    }
}

impl FromStr for Cidr6 {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| {
            CidrParseError(format!(
                "invalid IPv6 CIDR `{s}`: {why} (expected e.g. `fd00::1/64`)"
            ))
        };
        let (addr, len) = s.split_once('/').ok_or_else(|| err("missing `/prefix`"))?;
        let address: Ipv6Addr = addr.parse().map_err(|_| err("bad IPv6 address"))?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
            return Err(err("bad prefix length"));
        }
        let prefix_len: u8 = len.parse().map_err(|_| err("bad prefix length"))?;
        if prefix_len > 128 {
            return Err(err("prefix length must be 0..=128"));
        }
        Ok(Cidr6 {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

pub(super) struct Mac(pub(super) [u8; 6]);

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<dataplane::wire::MacAddr>()
            .map(|m| Mac(m.0))
            .map_err(|_| {
                de::Error::custom(format!(
                    "invalid MAC address `{s}` (expected six hex octets like `02:00:00:00:00:01`)"
                ))
            })
    }
}

/// An IPv4 or IPv6 prefix: IPv6 when the text holds a `:`.
pub(super) enum RawAnyCidr {
    V4(Cidr),
    V6(Cidr6),
}

impl<'de> Deserialize<'de> for RawAnyCidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains(':') {
            s.parse().map(RawAnyCidr::V6).map_err(de::Error::custom)
        } else {
            s.parse().map(RawAnyCidr::V4).map_err(de::Error::custom)
        }
    }
}

/// An IPv4 or IPv6 address: IPv6 when the text holds a `:`.
pub(super) enum RawAnyIp {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl<'de> Deserialize<'de> for RawAnyIp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains(':') {
            s.parse().map(RawAnyIp::V6).map_err(|_| {
                de::Error::custom(format!(
                    "invalid IPv6 address `{s}` (expected e.g. `fd00::1`)"
                ))
            })
        } else {
            s.parse().map(RawAnyIp::V4).map_err(|_| {
                de::Error::custom(format!(
                    "invalid IPv4 address `{s}` (expected e.g. `10.0.0.1`)"
                ))
            })
        }
    }
}

pub(super) struct RawDriver(pub(super) Driver);

impl<'de> Deserialize<'de> for RawDriver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(RawDriver).map_err(de::Error::custom)
    }
}

pub(super) struct Ipv4(pub(super) Ipv4Addr);

impl<'de> Deserialize<'de> for Ipv4 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Ipv4).map_err(|_| {
            de::Error::custom(format!(
                "invalid IPv4 address `{s}` (expected e.g. `10.0.0.1`)"
            ))
        })
    }
}
