/** The agent's two kinds of error a caller can act on: one that answers with a status, one in the configuration. */

/**
 * An error whose caller gets a status: HTTP answers carry it (body `{code, reason}`), and the
 * KubeEdge protocol uses the same numbers for its Result codes (400, 404, 500).
 */
export class AgentError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The configuration (a file, a variable, a manifest field) cannot be run with; the message names where. */
export class ConfigError extends Error {}
