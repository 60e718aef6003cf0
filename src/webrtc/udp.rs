//! The one WebRTC UDP socket: binding it ([`bind`]), and batched I/O on it (Linux
//! `recvmmsg(2)` / `sendmmsg(2)`).
//!
//! The socket is usually bound to `0.0.0.0`, and a peer may reach it on any of the host
//! candidates we advertise (127.0.0.1, the LAN address, ...). ICE needs to know which one a
//! datagram arrived on (a candidate pair is local address + remote address, RFC 8445 6.1.2.2),
//! and a reply must leave from the address the peer sent to, or the peer discards it
//! (RFC 8445 7.2.5.2.1, "non-symmetric transport addresses"). `IP_PKTINFO` (ip(7)) gives both:
//! the destination address of each received datagram, and the source address of each sent one.
//! Everything goes through two calls per batch, never one syscall per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Largest datagram we read; WebRTC packets stay under 1500 bytes.
pub const MAX_DATAGRAM: usize = 2048;
/// Datagrams per `recvmmsg` / `sendmmsg` call.
const BATCH: usize = 64;
const CONTROL_LEN: usize = 64;

/// Binds the WebRTC UDP socket (non-blocking, large buffers, `IP_PKTINFO` on IPv4).
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Big buffers: a keyframe for a few hundred viewers leaves in one burst.
    let _ = socket.set_send_buffer_size(8 << 20);
    let _ = socket.set_recv_buffer_size(8 << 20);
    socket
        .bind(&addr.into())
        .map_err(|e| anyhow::anyhow!("cannot listen for webrtc on udp {addr}: {e}"))?;
    socket.set_nonblocking(true)?;
    if addr.is_ipv4() {
        enable_pktinfo(&socket)?;
    }
    Ok(socket.into())
}

/// Turns on `IP_PKTINFO` so received datagrams carry their destination address.
pub fn enable_pktinfo(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            &on as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One received datagram: its bytes are `buffer[..len]` of [`Receiver::buffer`].
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    /// The local address it was sent to, when the kernel said (IPv4 with `IP_PKTINFO`).
    pub to_ip: Option<IpAddr>,
}

/// Reusable buffers for `recvmmsg`.
pub struct Receiver {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<[u8; CONTROL_LEN]>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside only ever point into the struct's own vectors and are
// rebuilt before every call.
unsafe impl Send for Receiver {}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            buffers: vec![[0; MAX_DATAGRAM]; BATCH],
            // SAFETY: all-zero is a valid sockaddr_storage / iovec / mmsghdr.
            names: vec![unsafe { zeroed() }; BATCH],
            controls: vec![[0; CONTROL_LEN]; BATCH],
            iovecs: vec![unsafe { zeroed() }; BATCH],
            headers: vec![unsafe { zeroed() }; BATCH],
        }
    }
}

impl Receiver {
    pub fn buffer(&self, index: usize) -> &[u8] {
        &self.buffers[index]
    }

    /// Reads up to a batch of datagrams without blocking. `Ok(empty)` never happens: an
    /// empty socket is `Err(WouldBlock)`.
    pub fn recv(&mut self, fd: RawFd, out: &mut Vec<Received>) -> io::Result<()> {
        out.clear();
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: MAX_DATAGRAM,
            };
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = &mut self.names[i] as *mut _ as *mut libc::c_void;
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &mut self.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = self.controls[i].as_mut_ptr() as *mut libc::c_void;
            header.msg_controllen = CONTROL_LEN as _;
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by self that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for i in 0..n as usize {
            let header = &self.headers[i];
            // SAFETY: the kernel filled names[i] with msg_namelen bytes of a sockaddr.
            let Some(from) = (unsafe { sockaddr_to_std(&self.names[i]) }) else {
                continue;
            };
            if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue; // larger than any WebRTC packet: not ours to parse
            }
            out.push(Received {
                len: header.msg_len as usize,
                from,
                // SAFETY: the control buffer holds msg_controllen bytes of cmsgs.
                to_ip: unsafe { pktinfo_destination(&header.msg_hdr) },
            });
        }
        Ok(())
    }
}

/// One datagram to send.
pub struct Outgoing<'a> {
    pub to: SocketAddr,
    /// Send from this local address (the one the peer used); `None` lets the kernel choose.
    pub from_ip: Option<IpAddr>,
    pub data: &'a [u8],
}

/// Segments per GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Bytes per GSO message (one IP datagram's payload at most).
const GSO_MAX_BYTES: usize = 60_000;
/// Cleared when the kernel refuses `UDP_SEGMENT`; plain `sendmmsg` from then on.
static GSO_WORKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Sends `datagrams` in `sendmmsg` batches. Consecutive datagrams to one destination whose
/// sizes allow it (all equal but a shorter last one: a frame's RTP packets to one viewer) go
/// as one UDP GSO message (`UDP_SEGMENT`, udp(7)): the kernel builds one large packet and
/// splits it late, instead of walking the stack once per datagram. Returns how many
/// datagrams left; the rest were dropped because the socket buffer was full (UDP: dropping
/// beats blocking every peer).
pub fn send(fd: RawFd, datagrams: &[Outgoing<'_>]) -> io::Result<usize> {
    let gso = GSO_WORKS.load(std::sync::atomic::Ordering::Relaxed);
    let groups = group(datagrams, gso);
    match send_groups(fd, datagrams, &groups, gso) {
        Err(e) if gso && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
            tracing::info!(error = %e, "UDP GSO refused by the kernel; sending datagrams one by one");
            GSO_WORKS.store(false, std::sync::atomic::Ordering::Relaxed);
            send_groups(fd, datagrams, &group(datagrams, false), false)
        }
        other => other,
    }
}

/// Splits `datagrams` into runs sent as one message each: `(start, count)`.
fn group(datagrams: &[Outgoing<'_>], gso: bool) -> Vec<(usize, usize)> {
    let mut groups: Vec<(usize, usize)> = Vec::with_capacity(datagrams.len());
    let mut i = 0;
    while i < datagrams.len() {
        let first = &datagrams[i];
        let size = first.data.len();
        let mut n = 1;
        let mut bytes = size;
        while gso && size > 0 && i + n < datagrams.len() && n < GSO_MAX_SEGMENTS {
            let next = &datagrams[i + n];
            let prev_len = datagrams[i + n - 1].data.len();
            if next.to != first.to
                || next.from_ip != first.from_ip
                || prev_len != size
                || next.data.len() > size
                || next.data.is_empty()
                || bytes + next.data.len() > GSO_MAX_BYTES
            {
                break;
            }
            bytes += next.data.len();
            n += 1;
        }
        groups.push((i, n));
        i += n;
    }
    groups
}

fn send_groups(
    fd: RawFd,
    datagrams: &[Outgoing<'_>],
    groups: &[(usize, usize)],
    gso: bool,
) -> io::Result<usize> {
    let mut sent = 0;
    let mut iovecs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.data.as_ptr() as *mut libc::c_void,
            iov_len: d.data.len(),
        })
        .collect();
    for chunk in groups.chunks(BATCH) {
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut controls = [[0u8; CONTROL_LEN]; BATCH];
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, &(start, count)) in chunk.iter().enumerate() {
            let d = &datagrams[start];
            let name_len = std_to_sockaddr(d.to, &mut names[i]);
            let header = &mut headers[i].msg_hdr;
            header.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
            header.msg_namelen = name_len;
            header.msg_iov = iovecs[start..].as_mut_ptr();
            header.msg_iovlen = count as _;
            let src = match (d.from_ip, d.to) {
                (Some(IpAddr::V4(src)), SocketAddr::V4(_)) => Some(src),
                _ => None,
            };
            let segment = (gso && count > 1).then_some(d.data.len() as u16);
            // SAFETY: controls[i] is large enough for both cmsgs.
            unsafe { write_control(header, &mut controls[i], src, segment) };
        }
        let mut offset = 0;
        while offset < chunk.len() {
            // SAFETY: headers[offset..] point into arrays that live until the loop ends.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    headers.as_mut_ptr().add(offset),
                    (chunk.len() - offset) as _,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(sent),
                    io::ErrorKind::Interrupted => continue,
                    _ if e.raw_os_error() == Some(libc::EIO)
                        || e.raw_os_error() == Some(libc::EINVAL) =>
                    {
                        return Err(e)
                    }
                    // An unreachable or refused destination fails only its own message:
                    // skip it and carry on with the batch.
                    _ => {
                        offset += 1;
                        continue;
                    }
                }
            }
            for &(_, count) in &chunk[offset..offset + n as usize] {
                sent += count;
            }
            offset += n as usize;
        }
    }
    Ok(sent)
}

/// Control messages of one outgoing message: `IP_PKTINFO` (source address) and/or
/// `UDP_SEGMENT` (GSO segment size).
unsafe fn write_control(
    header: &mut libc::msghdr,
    control: &mut [u8; CONTROL_LEN],
    src: Option<Ipv4Addr>,
    segment: Option<u16>,
) {
    let mut len = 0;
    if src.is_some() {
        len += libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
    }
    if segment.is_some() {
        len += libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
    }
    if len == 0 {
        return;
    }
    header.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    header.msg_controllen = len as _;
    let mut cmsg = libc::CMSG_FIRSTHDR(header);
    if let Some(src) = src {
        write_pktinfo(cmsg, src);
        cmsg = libc::CMSG_NXTHDR(header, cmsg);
    }
    if let Some(segment) = segment {
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, segment);
    }
}

unsafe fn write_pktinfo(cmsg: *mut libc::cmsghdr, src: Ipv4Addr) {
    (*cmsg).cmsg_level = libc::IPPROTO_IP;
    (*cmsg).cmsg_type = libc::IP_PKTINFO;
    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from_ne_bytes(src.octets()),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::in_pktinfo, info);
}

unsafe fn pktinfo_destination(header: &libc::msghdr) -> Option<IpAddr> {
    let mut cmsg = libc::CMSG_FIRSTHDR(header);
    while !cmsg.is_null() {
        if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
            let info: libc::in_pktinfo =
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo);
            return Some(IpAddr::V4(Ipv4Addr::from(
                info.ipi_addr.s_addr.to_ne_bytes(),
            )));
        }
        cmsg = libc::CMSG_NXTHDR(header, cmsg);
    }
    None
}

unsafe fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            let a = &*(storage as *const _ as *const libc::sockaddr_in);
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            let a = &*(storage as *const _ as *const libc::sockaddr_in6);
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn std_to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let out = unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in) };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = a.port().to_be();
            out.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let out = unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in6) };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            out.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The IPv4 addresses of this host's interfaces that are up (loopback included), for host
/// candidates when the socket is bound to `0.0.0.0`.
pub fn interface_ipv4s() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list that freeifaddrs releases; we only read it between.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cursor = list;
        while !cursor.is_null() {
            let entry = &*cursor;
            let up = entry.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
            if up
                && !entry.ifa_addr.is_null()
                && (*entry.ifa_addr).sa_family as libc::c_int == libc::AF_INET
            {
                let a = &*(entry.ifa_addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
            cursor = entry.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_go_out_and_come_back_with_their_destination_address() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        enable_pktinfo(&b).unwrap();
        let to: SocketAddr = ([127, 0, 0, 1], b.local_addr().unwrap().port()).into();
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 10 + i as usize]).collect();
        let out: Vec<Outgoing> = payloads
            .iter()
            .map(|p| Outgoing {
                to,
                from_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                data: p,
            })
            .collect();
        assert_eq!(send(a.as_raw_fd(), &out).unwrap(), 100);
        let mut receiver = Receiver::default();
        let mut got = Vec::new();
        let mut seen = 0;
        while seen < 100 {
            receiver.recv(b.as_raw_fd(), &mut got).unwrap();
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.from, a.local_addr().unwrap());
                assert_eq!(r.to_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                assert_eq!(&receiver.buffer(i)[..r.len], &payloads[seen][..]);
                seen += 1;
            }
        }
        // A frame's worth of equal-sized packets and a shorter last one (one GSO message)
        // arrive as separate datagrams.
        let frame: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![i; if i == 9 { 300 } else { 1200 }])
            .collect();
        let out: Vec<Outgoing> = frame
            .iter()
            .map(|p| Outgoing {
                to,
                from_ip: None,
                data: p,
            })
            .collect();
        assert_eq!(group(&out, true), vec![(0, 10)]);
        assert_eq!(send(a.as_raw_fd(), &out).unwrap(), 10);
        let mut seen = 0;
        while seen < 10 {
            receiver.recv(b.as_raw_fd(), &mut got).unwrap();
            for (i, r) in got.iter().enumerate() {
                assert_eq!(&receiver.buffer(i)[..r.len], &frame[seen][..]);
                seen += 1;
            }
        }
        let err = receiver.recv(b.as_raw_fd(), &mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(interface_ipv4s().contains(&Ipv4Addr::LOCALHOST));
    }
}
