//! The one WebRTC UDP socket: binding it ([`bind`]), and batched I/O on it (Linux
//! `recvmmsg(2)` / `sendmmsg(2)`).
//!
//! The socket is usually bound to every address: `0.0.0.0` is taken as `[::]` with
//! `IPV6_V6ONLY` off (ipv6(7)), one dual-stack socket for IPv4 and IPv6 peers, where the host
//! has IPv6 (else IPv4 only). IPv4 peers then show as `::ffff:a.b.c.d`; addresses are given
//! back to the engine in their IPv4 form, and IPv4 destinations are sent to as such (Linux
//! hands them to its IPv4 path). A peer may reach the socket on any of the host candidates we
//! advertise (127.0.0.1, ::1, the LAN addresses, ...). ICE needs to know which one a datagram
//! arrived on (a candidate pair is local address + remote address, RFC 8445 6.1.2.2), and a
//! reply must leave from the address the peer sent to, or the peer discards it (RFC 8445
//! 7.2.5.2.1, "non-symmetric transport addresses"). `IP_PKTINFO` (ip(7)) and `IPV6_PKTINFO`
//! (RFC 3542 6) give both: the destination address of each received datagram, and the source
//! address of each sent one. Everything goes through two calls per batch, never one syscall
//! per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Largest datagram we read; WebRTC packets stay under 1500 bytes.
pub const MAX_DATAGRAM: usize = 2048;
/// Datagrams per `recvmmsg` / `sendmmsg` call.
const BATCH: usize = 64;
const CONTROL_LEN: usize = 96;

/// Binds the WebRTC UDP socket (non-blocking, large buffers, the packet-info options). An
/// address of `0.0.0.0` binds `[::]` as a dual-stack socket when the host allows it (IPv4
/// only otherwise); `[::]` is dual-stack too; any other address is that address only.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    if addr.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        let any = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), addr.port());
        match bind_one(any) {
            Ok(socket) => return Ok(socket),
            Err(e) => tracing::debug!(error = %e, "no dual-stack socket: WebRTC over IPv4 only"),
        }
    }
    bind_one(addr)
}

fn bind_one(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let dual = addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    if addr.is_ipv6() {
        socket.set_only_v6(!dual)?;
    }
    // Big buffers: a keyframe for a few hundred viewers leaves in one burst.
    let _ = socket.set_send_buffer_size(8 << 20);
    let _ = socket.set_recv_buffer_size(8 << 20);
    socket
        .bind(&addr.into())
        .map_err(|e| anyhow::anyhow!("cannot listen for webrtc on udp {addr}: {e}"))?;
    socket.set_nonblocking(true)?;
    enable_pktinfo(&socket, addr.is_ipv4() || dual, addr.is_ipv6())?;
    Ok(socket.into())
}

/// Turns on `IP_PKTINFO` (`v4`) and `IPV6_RECVPKTINFO` (`v6`) so that received datagrams carry
/// their destination address.
pub fn enable_pktinfo(socket: &impl AsRawFd, v4: bool, v6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let options = [
        (v4, libc::IPPROTO_IP, libc::IP_PKTINFO),
        (v6, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
    ];
    for (_, level, name) in options.into_iter().filter(|o| o.0) {
        // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                &on as *const _ as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One received datagram: its bytes are `buffer[..len]` of [`Receiver::buffer`].
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    /// The local address it was sent to, when the kernel said (`IP_PKTINFO`, `IPV6_PKTINFO`).
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
            let src = d.from_ip.filter(|ip| ip.is_ipv4() == d.to.is_ipv4());
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

/// Control messages of one outgoing message: `IP_PKTINFO` or `IPV6_PKTINFO` (source
/// address) and/or `UDP_SEGMENT` (GSO segment size).
unsafe fn write_control(
    header: &mut libc::msghdr,
    control: &mut [u8; CONTROL_LEN],
    src: Option<IpAddr>,
    segment: Option<u16>,
) {
    let mut len = 0;
    match src {
        Some(IpAddr::V4(_)) => {
            len += libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize
        }
        Some(IpAddr::V6(_)) => {
            len += libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize
        }
        None => {}
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

unsafe fn write_pktinfo(cmsg: *mut libc::cmsghdr, src: IpAddr) {
    let src = match src {
        IpAddr::V4(src) => src,
        IpAddr::V6(src) => {
            (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
            (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: 0,
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::in6_pktinfo, info);
            return;
        }
    };
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
        if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_PKTINFO {
            let info: libc::in6_pktinfo =
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in6_pktinfo);
            return Some(Ipv6Addr::from(info.ipi6_addr.s6_addr).to_canonical());
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
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            // An IPv4 peer of a dual-stack socket, as the IPv4 address it is.
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )),
            })
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
    interface_ips(false)
        .into_iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// The addresses of this host's interfaces that are up, IPv4 and with `v6` IPv6 too (::1
/// included, link-local fe80::/10 left out: a candidate cannot name its interface), for host
/// candidates when the socket is bound to every address.
pub fn interface_ips(v6: bool) -> Vec<IpAddr> {
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
            let family = if entry.ifa_addr.is_null() {
                -1
            } else {
                (*entry.ifa_addr).sa_family as libc::c_int
            };
            let ip = match family {
                libc::AF_INET => {
                    let a = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    Some(IpAddr::V4(Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes())))
                }
                libc::AF_INET6 if v6 => {
                    let a = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                    let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
                    (!link_local).then_some(IpAddr::V6(ip))
                }
                _ => None,
            };
            if let Some(ip) = ip.filter(|ip| up && !out.contains(ip)) {
                out.push(ip);
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
    fn a_dual_stack_socket_talks_to_ipv4_and_ipv6_peers_in_their_own_terms() {
        let dual = bind(([0, 0, 0, 0], 0).into()).unwrap();
        let port = dual.local_addr().unwrap().port();
        assert_eq!(
            dual.local_addr().unwrap().ip(),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            "this host has IPv6 (::1): 0.0.0.0 is taken as [::]"
        );
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        v4.send_to(b"four", ("127.0.0.1", port)).unwrap();
        v6.send_to(b"six", ("::1", port)).unwrap();
        let mut receiver = Receiver::default();
        let mut got = Vec::new();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            if receiver.recv(dual.as_raw_fd(), &mut got).is_ok() {
                seen.extend(got.iter().map(|r| (r.from, r.to_ip)));
            }
        }
        seen.sort();
        let (v4_addr, v6_addr) = (v4.local_addr().unwrap(), v6.local_addr().unwrap());
        assert_eq!(
            seen,
            [
                (v4_addr, Some(IpAddr::V4(Ipv4Addr::LOCALHOST))),
                (v6_addr, Some(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            ],
            "IPv4 peers as IPv4 addresses, not ::ffff:127.0.0.1"
        );
        // Replies from the address each peer used: a GSO batch to each, with its source.
        let frame: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![i; if i == 4 { 100 } else { 1000 }])
            .collect();
        let out: Vec<Outgoing> = [
            (v4_addr, Ipv4Addr::LOCALHOST.into()),
            (v6_addr, Ipv6Addr::LOCALHOST.into()),
        ]
        .into_iter()
        .flat_map(|(to, from)| {
            frame.iter().map(move |p| Outgoing {
                to,
                from_ip: Some(from),
                data: p,
            })
        })
        .collect();
        assert_eq!(group(&out, true), vec![(0, 5), (5, 5)]);
        assert_eq!(send(dual.as_raw_fd(), &out).unwrap(), 10);
        for peer in [&v4, &v6] {
            peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            for expected in &frame {
                let mut buf = [0u8; 2048];
                let (n, from) = peer.recv_from(&mut buf).unwrap();
                assert_eq!(from.port(), port);
                assert!(from.ip().is_loopback());
                assert_eq!(&buf[..n], &expected[..]);
            }
        }
        let ips = interface_ips(true);
        assert!(ips.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST)), "{ips:?}");
        assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{ips:?}");
        assert!(
            ips.iter()
                .all(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)),
            "no link-local: {ips:?}"
        );
    }

    #[test]
    fn batches_go_out_and_come_back_with_their_destination_address() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        enable_pktinfo(&b, true, false).unwrap();
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
