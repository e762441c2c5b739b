/**
 * The Content-Security-Policy of everything this app serves (helmet sets it). Pages load
 * scripts and styles only as files from our own origin — no inline code, no CDN — so an
 * injected `<script>` or `style=` does nothing even if escaping ever failed. HTML mail is
 * shown only inside a sandboxed frame of our own origin with its own, stricter policy
 * (see MAIL_FRAME_POLICY).
 */
export function contentSecurityPolicy(secure: boolean) {
  return {
    useDefaults: false,
    directives: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      scriptSrcAttr: ["'none'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", 'data:'],
      fontSrc: ["'self'"],
      connectSrc: ["'self'"],
      frameSrc: ["'self'"],
      objectSrc: ["'none'"],
      baseUri: ["'none'"],
      formAction: ["'self'"],
      frameAncestors: ["'self'"],
      ...(secure ? { upgradeInsecureRequests: [] } : {}),
    },
  };
}

/**
 * A mail body in the app's iframe: no scripts, no forms, no plugins, no requests out (remote
 * images would tell the sender it was read), its own inline styles allowed since they can
 * reach nothing. `sandbox` makes the frame a unique origin even if it is opened on its own.
 */
export const MAIL_FRAME_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'";
