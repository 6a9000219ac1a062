declare module "@novnc/novnc" {
  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, urlOrChannel: string | WebSocket, options?: {
      shared?: boolean; credentials?: { username?: string; password?: string; target?: string };
      repeaterID?: string; wsProtocols?: string[];
    });
    viewOnly: boolean;
    focusOnClick: boolean;
    scaleViewport: boolean;
    resizeSession: boolean;
    background: string;
    disconnect(): void;
    sendCredentials(c: { password?: string }): void;
    sendCtrlAltDel(): void;
    focus(): void;
  }
}
