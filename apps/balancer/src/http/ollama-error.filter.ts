import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { errorBody } from './errors';

/**
 * Every error from a Nest route in Ollama's shape ({"error":"..."}; OpenAI's on /v1/*), never a
 * stack trace. Terminus health results pass through unchanged. Checks headersSent first: a response
 * that already began cannot take an error body.
 */
@Catch()
export class OllamaErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger(OllamaErrorFilter.name);
  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const res = ctx.getResponse<Response>();
    const req = ctx.getRequest<Request>();
    if (res.headersSent) {
      res.end();
      return;
    }
    let status = 500;
    let message = 'internal error';
    if (exception instanceof HttpException) {
      status = exception.getStatus();
      const body = exception.getResponse();
      if (typeof body === 'object' && body !== null && 'status' in body && ('info' in body || 'details' in body)) {
        res.status(status).json(body);
        return;
      }
      const m = typeof body === 'string' ? body : (body as any)?.message;
      message = Array.isArray(m) ? m.join('; ') : typeof m === 'string' ? m : exception.message;
    } else if ((exception as any)?.type === 'entity.too.large') {
      status = 413;
      message = 'request body too large';
    } else if ((exception as any)?.type === 'entity.parse.failed') {
      status = 400;
      message = 'invalid JSON in request body';
    } else {
      this.logger.error(exception instanceof Error ? exception.message : String(exception));
    }
    res
      .status(status)
      .type('application/json')
      .send(errorBody(req.originalUrl ?? req.url, status, message));
  }
}
