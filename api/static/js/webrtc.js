// One WebRTC viewer: recvonly H.264 (and the camera's G.711 audio when it has some), non-trickle
// ICE (one POST with all candidates).
import { api, session } from "./api.js";
import { cameraPath, withDevice } from "./catalog.js";

const ICE_GATHER_TIMEOUT_MS = 2500;

function preferH264(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
  const h264 = codecs.filter(c => /h264/i.test(c.mimeType));
  const rtx = codecs.filter(c => /rtx/i.test(c.mimeType));
  if (h264.length) transceiver.setCodecPreferences(h264.concat(rtx));
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise(resolve => {
    const timer = setTimeout(resolve, ICE_GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

// Viewers with a server-side session; hung up explicitly when the page goes away, so the server
// frees the peer at once instead of waiting for ICE consent to expire.
const openViewers = new Set();
window.addEventListener("pagehide", () => {
  for (const v of openViewers) {
    if (!v.sessionId) continue;
    fetch(`/api/live/sessions/${v.sessionId}`, {
      method: "DELETE", keepalive: true, headers: { Authorization: "Bearer " + session.token },
    }).catch(() => {});
  }
});

export class LiveViewer {
  // camera: its key "device/channel"; offerPath: where the offer goes, by default the camera's
  // live stream (an NVR playback has its own)
  constructor(camera, video, onState = () => {}, offerPath = null) {
    this.channelId = camera;
    this.offerPath = offerPath || withDevice(`/api/live/${cameraPath(camera)}/offer`, camera);
    this.video = video;
    this.onState = onState;
    this.pc = null;
    this.sessionId = null;
    this.closed = false;
  }

  async open() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    preferH264(pc.addTransceiver("video", { direction: "recvonly" }));
    pc.addTransceiver("audio", { direction: "recvonly" }); // inactive in the answer when none
    const media = new MediaStream();
    pc.addEventListener("track", ev => {
      media.addTrack(ev.track);
      if (this.video.srcObject !== media) this.video.srcObject = media;
      this.video.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => this.onState(pc.connectionState));
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (this.closed) return;
    const answer = await api(this.offerPath, {
      method: "POST", body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }),
    });
    this.sessionId = answer.session_id;
    openViewers.add(this);
    if (this.closed) { this.close(); return; }
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  close() {
    this.closed = true;
    openViewers.delete(this);
    if (this.pc) { this.pc.close(); this.pc = null; }
    this.video.srcObject = null;
    if (this.sessionId) {
      const id = this.sessionId;
      this.sessionId = null;
      api(`/api/live/sessions/${id}`, { method: "DELETE" }).catch(() => {});
    }
  }
}
