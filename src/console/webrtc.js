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

  window.SwitchyardWebRtc = { waitForGathering, errorText, parseIceServers, mediaPorts };
})();
