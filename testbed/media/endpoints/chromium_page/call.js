// One side of one call in the browser, as a cloud dialer's softphone runs it. The harness calls
// offer()/answer()/accept()/stopMedia()/hangUp() through Playwright and relays the descriptions; state
// changes go back through the binding window.testbedEvent. Nothing here talks to the network except
// the peer connection itself (no STUN/TURN servers unless the harness passes the call's ice: then the
// browser gathers relays over every TURN transport given and ICE falls back UDP -> TCP -> TLS by itself).
"use strict";

const call = {
  pc: null,
  mic: null,
  sender: null,
  chunks: [],      // received audio as Chromium played it out: Float32Array per AudioData
  chunkTimes: [],  // AudioData.timestamp (us) and the epoch ms when each chunk was read
  readTimes: [],
  rates: [],       // each chunk's sample rate
  stats: [],       // getStats() once a second
  atStop: null,    // getStats() when the harness stopped the media: Chrome's figures for the talk time
  statsTimer: null,
  captureDone: null,
  timings: {},     // gather_s: setLocalDescription to gathering complete (TURN allocations included)
};

function event(state, extra) {
  if (window.testbedEvent) window.testbedEvent(Object.assign({state, time: Date.now() / 1000}, extra || {}));
}

async function openMic() {
  // The fake microphone plays the reference clip (--use-file-for-fake-audio-capture); the processing a
  // softphone would turn off for a headset is off here too, so what is sent is the clip itself.
  call.mic = await navigator.mediaDevices.getUserMedia({
    audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1},
    video: false,
  });
  return call.mic.getAudioTracks()[0];
}

function newPeerConnection(config) {
  const pc = new RTCPeerConnection({iceServers: config.iceServers || [], iceTransportPolicy: config.iceTransportPolicy || "all"});
  pc.onconnectionstatechange = () => event(pc.connectionState);
  pc.ontrack = (e) => capture(e.track);
  call.pc = pc;
  return pc;
}

function preferCodec(transceiver, mime) {
  const wanted = RTCRtpReceiver.getCapabilities("audio").codecs.filter(
    (c) => c.mimeType.toLowerCase() === mime.toLowerCase());
  if (!wanted.length) throw new Error(`this browser has no ${mime}`);
  transceiver.setCodecPreferences(wanted);
}

function encodings(config) {
  // networkPriority is how a page asks Chromium for DSCP; 'unset' leaves it out, as a page that never asks
  return config.networkPriority === "unset" ? [{}] : [{networkPriority: config.networkPriority}];
}

async function gathered(pc) {
  // The harness relays whole descriptions (no trickle): wait for gathering to complete, or, once a relay
  // candidate is in, for 300 ms without a new one (a TURN transport the firewall blocks would hold
  // "complete" back for its whole timeout, which a trickling dialer never waits for); at most 5 s.
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    let quiet = null;
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
    pc.addEventListener("icecandidate", (e) => {
      if (e.candidate && e.candidate.type === "relay") { clearTimeout(quiet); quiet = setTimeout(resolve, 300); }
    });
    setTimeout(resolve, 5000);
  });
}

async function offer(config) {
  const track = await openMic();
  const pc = newPeerConnection(config);
  const transceiver = pc.addTransceiver(track, {direction: "sendrecv", sendEncodings: encodings(config)});
  preferCodec(transceiver, config.mime);
  call.sender = transceiver.sender;
  const started = performance.now();
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  call.timings.gather_s = Math.round(performance.now() - started) / 1000;
  startStats();
  return pc.localDescription.sdp;
}

async function answer(config, sdp) {
  const track = await openMic();
  const pc = newPeerConnection(config);
  await pc.setRemoteDescription({type: "offer", sdp});
  const transceiver = pc.getTransceivers()[0];
  transceiver.direction = "sendrecv";
  await transceiver.sender.replaceTrack(track);
  preferCodec(transceiver, config.mime);
  call.sender = transceiver.sender;
  await pc.setLocalDescription(await pc.createAnswer());
  // an answerer's sender exists only once the offer is in: ask for the priority once it is negotiated
  const parameters = transceiver.sender.getParameters();
  if (config.networkPriority !== "unset" && parameters.encodings.length) {
    parameters.encodings[0].networkPriority = config.networkPriority;
    await transceiver.sender.setParameters(parameters);
  }
  await gathered(pc);
  startStats();
  return pc.localDescription.sdp;
}

async function accept(sdp) {
  await call.pc.setRemoteDescription({type: "answer", sdp});
}

function capture(track) {
  // Chromium feeds a remote track only while something plays it: a muted <audio> pulls the stream.
  const element = document.getElementById("remote");
  element.srcObject = new MediaStream([track]);
  element.play().catch(() => {});
  const reader = new MediaStreamTrackProcessor({track, maxBufferSize: 500}).readable.getReader();
  call.captureDone = (async () => {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      const samples = new Float32Array(value.numberOfFrames);
      value.copyTo(samples, {planeIndex: 0, format: "f32-planar"});
      call.rates.push(value.sampleRate);  // Chromium hands out the decoder's rate: 8, 16 or 48 kHz
      call.chunks.push(samples);
      call.chunkTimes.push(value.timestamp);
      call.readTimes.push(performance.timeOrigin + performance.now());
      value.close();
    }
  })();
  call.reader = reader;
}

const PICK = {
  "inbound-rtp": ["ssrc", "packetsReceived", "packetsLost", "packetsDiscarded", "jitter", "jitterBufferDelay",
    "jitterBufferEmittedCount", "jitterBufferTargetDelay", "jitterBufferMinimumDelay", "totalSamplesReceived",
    "concealedSamples", "silentConcealedSamples", "concealmentEvents", "insertedSamplesForDeceleration",
    "removedSamplesForAcceleration", "fecPacketsReceived", "fecPacketsDiscarded", "bytesReceived", "codecId"],
  "outbound-rtp": ["ssrc", "packetsSent", "bytesSent", "retransmittedPacketsSent", "targetBitrate", "codecId"],
};

async function snapshot() {
  const report = await call.pc.getStats();
  const out = {time: Date.now() / 1000};
  let pairId = null;
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  report.forEach((s) => {
    if ((s.type === "inbound-rtp" || s.type === "outbound-rtp") && s.kind === "audio") {
      const picked = {};
      for (const key of PICK[s.type]) if (s[key] !== undefined) picked[key] = s[key];
      if (picked.codecId && byId.has(picked.codecId)) picked.codec = byId.get(picked.codecId).mimeType;
      delete picked.codecId;
      out[s.type === "inbound-rtp" ? "inbound" : "outbound"] = picked;
    }
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  const pair = pairId && byId.get(pairId);
  if (pair) {
    const local = byId.get(pair.localCandidateId) || {};
    const remote = byId.get(pair.remoteCandidateId) || {};
    out.pair = {
      local: {type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol,
              address: local.address, port: local.port},
      remote: {type: remote.candidateType, protocol: remote.protocol, address: remote.address, port: remote.port},
      currentRoundTripTime: pair.currentRoundTripTime,
    };
  }
  return out;
}

function startStats() {
  call.statsTimer = setInterval(async () => {
    if (!call.pc || call.pc.connectionState === "closed") return;
    try { call.stats.push(await snapshot()); } catch (e) { /* a closing connection: the next tick ends it */ }
  }, 1000);
}

async function stopMedia() {
  // no track: the sender stops sending RTP at once; the connection (ICE consent, RTCP) stays up
  if (call.sender) await call.sender.replaceTrack(null);
  const stopped = Date.now() / 1000;
  try { call.atStop = await snapshot(); } catch (e) { /* never connected */ }
  return stopped;
}

async function quietFor() {
  // seconds since the last RTP packet arrived (null: none yet), from the inbound-rtp statistics
  if (!call.pc) return null;
  const report = await call.pc.getStats();
  for (const stats of report.values()) {
    if (stats.type === "inbound-rtp" && stats.kind === "audio" && stats.lastPacketReceivedTimestamp) {
      return Math.max(0, (stats.timestamp - stats.lastPacketReceivedTimestamp) / 1000);
    }
  }
  return null;
}

function toBase64(int16) {
  const bytes = new Uint8Array(int16.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

async function hangUp() {
  clearInterval(call.statsTimer);
  let last = null;
  try { last = await snapshot(); } catch (e) { /* never connected */ }
  if (last) call.stats.push(last);
  if (call.reader) { try { await call.reader.cancel(); } catch (e) {} }
  const lengths = call.chunks.map((c) => c.length);
  const total = lengths.reduce((a, b) => a + b, 0);
  const pcm = new Int16Array(total);
  let at = 0;
  for (const chunk of call.chunks) {
    for (let i = 0; i < chunk.length; i++) pcm[at + i] = Math.max(-32768, Math.min(32767, Math.round(chunk[i] * 32768)));
    at += chunk.length;
  }
  if (call.pc) call.pc.close();
  if (call.mic) call.mic.getTracks().forEach((t) => t.stop());
  return {
    rates: call.rates, pcm: toBase64(pcm), lengths, timestamps: call.chunkTimes, readTimes: call.readTimes,
    stats: call.stats, atStop: call.atStop, userAgent: navigator.userAgent, timings: call.timings,
  };
}
