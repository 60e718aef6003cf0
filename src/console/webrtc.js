// WebRTC signalling helpers shared by the player (WHEP) and publisher (WHIP) pages.
// Served at /assets/webrtc.js; defines window.SwitchyardWebRtc.
(() => {
  function waitForGathering(pc, capMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { pc.removeEventListener('icegatheringstatechange', check); clearTimeout(timer); resolve(); };
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      const timer = setTimeout(done, capMs);
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  // Error body: {"error": "..."} or plain text; returns plain words.
  async function errorText(res) {
    let body = '';
    try { body = (await res.text()).trim(); } catch (_) {}
    try { const j = JSON.parse(body); if (j && typeof j.error === 'string') return j.error; } catch (_) {}
    return body.length > 300 ? body.slice(0, 300) + '...' : body;
  }

  // Link: <stun:host:port>; rel="ice-server"; username="u"; credential="p" (RFC 9725 section 4.6).
  function parseIceServers(link) {
    const out = [];
    if (!link) return out;
    const re = /<([^>]*)>([^<]*)/g;
    let m;
    while ((m = re.exec(link))) {
      const p = {};
      for (const kv of m[2].split(';')) {
        const k = /^\s*([\w-]+)\s*=\s*"?([^"]*)"?\s*,?\s*$/.exec(kv);
        if (k) p[k[1].toLowerCase()] = k[2];
      }
      if (p.rel !== 'ice-server') continue;
      const s = { urls: m[1] };
      if (p.username) s.username = p.username;
      if (p.credential) s.credential = p.credential;
      out.push(s);
    }
    return out;
  }

  // "UDP 127.0.0.1:8189" from the answer's host candidates, for error messages.
  function mediaPorts(sdp) {
    const seen = new Set();
    for (const m of (sdp || '').matchAll(/^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ/gim)) seen.add(m[1] + ':' + m[2]);
    return seen.size ? 'UDP ' + [...seen].join(', ') : 'UDP (port unknown)';
  }

  // Codec preferences for a video transceiver that sends `name` (h264 | vp8 | vp9 | av1).
  // H.264: packetization-mode=1 first (profile-level-id 42e01f before other H.264), then the
  // rest, so the offer still works with a server that picks something else. Another codec:
  // only that one (VP9 profile 0 first) and the helpers (rtx, red, ulpfec), since the server
  // takes H.264 whenever the offer has it. Returns null if the browser cannot send `name`.
  function videoCodecPreferences(codecs, name) {
    const fmtp = (c) => (c.sdpFmtpLine || '').toLowerCase();
    const mime = (c) => c.mimeType.toLowerCase();
    const wanted = 'video/' + name;
    if (!codecs.some((c) => mime(c) === wanted)) return null;
    const helper = (c) => /^video\/(rtx|red|ulpfec|flexfec-03)$/.test(mime(c));
    const rank = (c) => {
      if (mime(c) !== wanted) return name === 'h264' ? 3 : helper(c) ? 4 : 5;
      if (name === 'h264') {
        if (!/packetization-mode=1/.test(fmtp(c))) return 2;
        return /profile-level-id=42e01f/.test(fmtp(c)) ? 0 : 1;
      }
      return name === 'vp9' && !/profile-id=0/.test(fmtp(c)) && fmtp(c) !== '' ? 1 : 0;
    };
    return codecs.map((c, i) => [rank(c), i, c])
      .filter((x) => name === 'h264' || x[0] < 5)
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]);
  }

  window.SwitchyardWebRtc = { waitForGathering, errorText, parseIceServers, mediaPorts, videoCodecPreferences };
})();
