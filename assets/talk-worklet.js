// AudioWorklet of the status page's push-to-talk: takes the microphone's 128-sample blocks,
// converts them to 16-bit little-endian mono PCM and posts ~20 ms pieces to the page, which
// sends them over the talk WebSocket (api/<panel>/talk?rate=<the context's sample rate>).
"use strict";

class Pcm16Sender extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.max(128, Math.round(sampleRate / 50));
    this.buf = new Int16Array(this.size);
    this.n = 0;
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      const v = Math.max(-1, Math.min(1, ch[i]));
      this.buf[this.n++] = v < 0 ? v * 0x8000 : v * 0x7fff;
      if (this.n === this.size) {
        // Int16Array is little-endian on every platform browsers run on.
        this.port.postMessage(this.buf.buffer, [this.buf.buffer]);
        this.buf = new Int16Array(this.size);
        this.n = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm16-sender", Pcm16Sender);
