// Type declarations for @spool/client (index.js).
/// <reference types="node" />

export interface TLSOptions { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string }
export interface ClientOptions { token?: string; tls?: TLSOptions; timeout?: number; retryFor?: number }
export interface QueueSettings {
  visibilityTimeout?: number; delay?: number; retention?: number; dedupWindow?: number;
  maxDeliveries?: number; deadLetterQueue?: string; maxPayloadBytes?: number; maxDepth?: number;
}
export interface QueueInfo {
  name: string;
  config: Required<QueueSettings>;
  stats: { ready: number; leased: number; delayed: number; total: number; oldestReadyAge: number;
    enqueuedTotal: number; ackedTotal: number; deliveredTotal: number; deadLetteredTotal: number;
    [counter: string]: number };
}
export type Payload = Buffer | Uint8Array | string | object;
export interface SendOptions { attributes?: Record<string, string>; delay?: number; dedupId?: string }
export type Outcome = 'OK' | 'LEASE_LOST' | 'INVALID_RECEIPT';

export class Message {
  readonly queue: string; readonly id: string; readonly payload: Buffer;
  readonly attributes: Record<string, string>; readonly receipt: string;
  readonly deliveryCount: number; readonly enqueueTime: Date | null;
  json(): any; text(): string;
}
export type Job = Message;

export class Retry extends Error { constructor(after?: number, reason?: string); readonly after: number }

export interface WorkerOptions {
  concurrency?: number; maxOutstanding?: number; visibilityTimeout?: number;
  maxLeaseDuration?: number; retryBackoff?: [number, number]; timeout?: number;
  shutdownTimeout?: number; onError?: (job: Job | null, error: Error) => void;
}
export interface WorkerStats {
  received: number; succeeded: number; failed: number; retried: number; timedOut: number;
  acked: number; nacked: number; ackLost: number; dropped: number; reconnects: number;
}
export class Worker {
  stats(): WorkerStats;
  close(timeoutSeconds?: number): Promise<void>;
  done(): Promise<void>;
  readonly error: SpoolError | null;
}

export class Queue {
  readonly name: string;
  create(options?: QueueSettings & { existOk?: boolean }): Promise<QueueInfo>;
  info(): Promise<QueueInfo>;
  delete(): Promise<void>;
  purge(): Promise<number>;
  send(payload: Payload, options?: SendOptions): Promise<string>;
  sendBatch(payloads: Payload[], options?: Omit<SendOptions, 'dedupId'>): Promise<string[]>;
  flush(): Promise<void>;
  lease(options?: { max?: number; wait?: number; visibilityTimeout?: number }): Promise<Message[]>;
  ack(...messages: Array<Message | string>): Promise<Outcome[]>;
  nack(messages: Message | string | Array<Message | string>, options?: { delay?: number }): Promise<Outcome[]>;
  worker(handler: (job: Job) => Promise<unknown> | unknown, options?: WorkerOptions): Worker;
  readonly publishRequestsSent: number;
}

export class Client {
  constructor(target?: string, options?: ClientOptions);
  readonly target: string;
  queue(name: string): Queue;
  listQueues(prefix?: string): Promise<QueueInfo[]>;
  close(): Promise<void>;
}

export class SpoolError extends Error { readonly code: string }
export class InvalidArgument extends SpoolError {}
export class NotFound extends SpoolError {}
export class AlreadyExists extends SpoolError {}
export class PermissionDenied extends SpoolError {}
export class Unauthenticated extends SpoolError {}
export class ResourceExhausted extends SpoolError {}
export class FailedPrecondition extends SpoolError {}
export class Unavailable extends SpoolError {}
export class DeadlineExceeded extends SpoolError {}
export class Cancelled extends SpoolError {}
