import { Module } from '@nestjs/common';
import { BackendPoller } from './backend-poller.service';
import { BackendRegistry } from './backend-registry.service';
import { FleetEvents } from './fleet-events';
import { ModelInventory } from './model-inventory';
import { OllamaClient } from './ollama-client';
import { OutlierDetection } from './outlier-detection';

/** What the balancer knows about the Ollama servers, and the polling that keeps it current. */
@Module({
  providers: [BackendRegistry, OllamaClient, ModelInventory, FleetEvents, OutlierDetection, BackendPoller],
  exports: [BackendRegistry, OllamaClient, ModelInventory, FleetEvents, OutlierDetection],
})
export class FleetModule {}
