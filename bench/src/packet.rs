//! The measured frames: Ethernet, IPv4 and a TCP header without payload, checksums valid.

/// TCP flags.
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

const IP_OFFSET: usize = 14;
const TCP_OFFSET: usize = IP_OFFSET + 20;
const FRAME_LEN: usize = TCP_OFFSET + 20;
const PROTO_TCP: u8 = 6;

/// One side of a TCP flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    pub addr: [u8; 4],
    pub port: u16,
}

/// A TCP segment `src` -> `dst` with `flags`.
pub fn tcp(src: Side, dst: Side, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x01]);
    f[6..12].copy_from_slice(&[0xee; 6]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[IP_OFFSET..TCP_OFFSET];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = PROTO_TCP;
    ip[12..16].copy_from_slice(&src.addr);
    ip[16..20].copy_from_slice(&dst.addr);
    let sum = checksum(0, ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let tcp = &mut f[TCP_OFFSET..];
    tcp[0..2].copy_from_slice(&src.port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = [
        &src.addr[..],
        &dst.addr[..],
        &[0, PROTO_TCP],
        &20u16.to_be_bytes(),
    ]
    .concat();
    let sum = checksum(partial_sum(&pseudo), tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    f
}

fn partial_sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
        .sum()
}

/// The Internet checksum of `bytes` added to `initial` (a partial sum).
fn checksum(initial: u32, bytes: &[u8]) -> u16 {
    let mut sum = initial + partial_sum(bytes);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let src = Side {
            addr: [10, 200, 0, 1],
            port: 40000,
        };
        let dst = Side {
            addr: [192, 168, 2, 1],
            port: 9999,
        };
        let f = tcp(src, dst, SYN);
        assert_eq!(f.len(), 54);
        assert_eq!(checksum(0, &f[IP_OFFSET..TCP_OFFSET]), 0);
        let pseudo = [&f[26..34], &[0, PROTO_TCP], &20u16.to_be_bytes()[..]].concat();
        assert_eq!(checksum(partial_sum(&pseudo), &f[TCP_OFFSET..]), 0);
        assert_eq!(f[TCP_OFFSET + 13], SYN);
    }
}
