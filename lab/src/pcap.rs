//! A small reader for the captures the lab takes (`tcpdump -w -`): the classic pcap file format
//! with Ethernet frames, and the IPv4 / IP-in-IP headers inside them, checked byte by byte.

use std::net::Ipv4Addr;

use anyhow::{Result, bail, ensure};

/// pcap link type of Ethernet frames.
const LINKTYPE_ETHERNET: u32 = 1;
const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
/// IP protocol number of IP-in-IP.
pub const IPPROTO_IPIP: u8 = 4;

/// The frames of a pcap capture (Ethernet link type), in order.
pub fn frames(data: &[u8]) -> Result<Vec<&[u8]>> {
    ensure!(
        data.len() >= 24,
        "pcap: {} bytes, shorter than the file header",
        data.len()
    );
    let magic = [data[0], data[1], data[2], data[3]];
    // Microsecond (a1b2c3d4) or nanosecond (a1b23c4d) timestamps, either byte order.
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("pcap: bad magic {magic:02x?}"),
    };
    let u32_at = |off: usize| {
        let b = [data[off], data[off + 1], data[off + 2], data[off + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let linktype = u32_at(20) & 0x0fff_ffff;
    ensure!(
        linktype == LINKTYPE_ETHERNET,
        "pcap: link type {linktype}, expected Ethernet"
    );
    let mut out = Vec::new();
    let mut off = 24;
    while off < data.len() {
        ensure!(
            off + 16 <= data.len(),
            "pcap: truncated record header at {off}"
        );
        let caplen = usize::try_from(u32_at(off + 8))?;
        let start = off + 16;
        ensure!(
            start + caplen <= data.len(),
            "pcap: record at {off} claims {caplen} bytes, file has {}",
            data.len() - start
        );
        out.push(&data[start..start + caplen]);
        off = start + caplen;
    }
    Ok(out)
}

/// An IPv4 header as found on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    /// Don't-fragment flag.
    pub df: bool,
    /// Total length field.
    pub total_len: u16,
    /// Header length in bytes.
    pub header_len: usize,
    /// Whether the header checksum verifies.
    pub checksum_ok: bool,
}

/// Parses the IPv4 header at the start of `data`; the header and the rest (payload, bounded by
/// the total length).
pub fn ipv4(data: &[u8]) -> Result<(Ipv4Header, &[u8])> {
    ensure!(data.len() >= 20, "IPv4: {} bytes, too short", data.len());
    ensure!(data[0] >> 4 == 4, "IPv4: version {}", data[0] >> 4);
    let header_len = usize::from(data[0] & 0x0f) * 4;
    ensure!(
        header_len >= 20 && data.len() >= header_len,
        "IPv4: header length {header_len} with {} bytes",
        data.len()
    );
    let total_len = u16::from_be_bytes([data[2], data[3]]);
    let end = usize::from(total_len).min(data.len());
    ensure!(end >= header_len, "IPv4: total length {total_len}");
    let header = Ipv4Header {
        src: Ipv4Addr::new(data[12], data[13], data[14], data[15]),
        dst: Ipv4Addr::new(data[16], data[17], data[18], data[19]),
        proto: data[9],
        ttl: data[8],
        df: data[6] & 0x40 != 0,
        total_len,
        header_len,
        checksum_ok: checksum(&data[..header_len]) == 0,
    };
    Ok((header, &data[header_len..end]))
}

/// The Internet checksum (one's complement of the one's-complement sum); 0 over a valid header.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Truncation is the point: the folded sum fits in 16 bits.
    !(sum as u16)
}

/// The IPv4 packet inside an Ethernet frame, if it carries one.
pub fn frame_ipv4(frame: &[u8]) -> Result<Option<(Ipv4Header, &[u8])>> {
    ensure!(frame.len() >= ETH_HLEN, "Ethernet: {} bytes", frame.len());
    if u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_IP {
        return Ok(None);
    }
    ipv4(&frame[ETH_HLEN..]).map(Some)
}

/// An IP-in-IP packet: outer header, inner header, inner payload length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipip {
    pub outer: Ipv4Header,
    pub inner: Ipv4Header,
    /// Bytes after the inner header.
    pub inner_payload_len: usize,
}

/// The IP-in-IP packet in an Ethernet frame (`None` if the frame is not IPv4 protocol 4).
pub fn frame_ipip(frame: &[u8]) -> Result<Option<Ipip>> {
    let Some((outer, payload)) = frame_ipv4(frame)? else {
        return Ok(None);
    };
    if outer.proto != IPPROTO_IPIP {
        return Ok(None);
    }
    let (inner, rest) = ipv4(payload)?;
    Ok(Some(Ipip {
        outer,
        inner,
        inner_payload_len: rest.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20-byte IPv4 header with a valid checksum.
    fn ip_header(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, total: u16) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, ttl, proto, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let sum = checksum(&h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h
    }

    fn ipip_frame() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend(ip_header([10, 0, 0, 1], [10, 0, 0, 2], 4, 64, 20 + 20 + 8));
        f.extend(ip_header([192, 168, 2, 1], [192, 168, 3, 1], 1, 63, 20 + 8));
        f.extend([8, 0, 0, 0, 0, 1, 0, 1]);
        f
    }

    fn pcap_file(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut d = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        d.extend([0u8; 8]);
        d.extend(262_144u32.to_le_bytes());
        d.extend(1u32.to_le_bytes());
        for f in frames {
            d.extend([0u8; 8]);
            let len = u32::try_from(f.len()).unwrap_or(0).to_le_bytes();
            d.extend(len);
            d.extend(len);
            d.extend(f);
        }
        d
    }

    #[test]
    fn reads_ipip_from_a_capture() -> Result<()> {
        let file = pcap_file(&[ipip_frame(), ipip_frame()]);
        let frames = frames(&file)?;
        assert_eq!(frames.len(), 2);
        let pkt = frame_ipip(frames[0])?.expect("an IPIP packet");
        assert_eq!(pkt.outer.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(pkt.outer.dst, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(pkt.outer.proto, IPPROTO_IPIP);
        assert!(pkt.outer.checksum_ok && pkt.outer.df);
        assert_eq!(pkt.inner.src, Ipv4Addr::new(192, 168, 2, 1));
        assert_eq!(pkt.inner.dst, Ipv4Addr::new(192, 168, 3, 1));
        assert_eq!(pkt.inner.proto, 1);
        assert!(pkt.inner.checksum_ok);
        assert_eq!(pkt.inner_payload_len, 8);
        Ok(())
    }

    #[test]
    fn rejects_bad_input() {
        assert!(frames(&[0u8; 10]).is_err());
        let mut file = pcap_file(&[ipip_frame()]);
        file.truncate(file.len() - 1);
        assert!(frames(&file).is_err());
        let mut frame = ipip_frame();
        frame[14 + 12] ^= 1; // outer source changed, checksum no longer matches
        let pkt = frame_ipip(&frame).ok().flatten().expect("still parses");
        assert!(!pkt.outer.checksum_ok);
        let mut arp = ipip_frame();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(matches!(frame_ipip(&arp), Ok(None)));
    }
}
