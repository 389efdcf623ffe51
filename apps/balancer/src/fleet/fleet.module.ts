import { Module } from '@nestjs/common';
import { AgentRegistrations } from './agent-registrations.service';
import { BackendPoller } from './backend-poller.service';
import { BackendRegistry } from './backend-registry.service';
import { FleetEvents } from './fleet-events';
import { ModelInventory } from './model-inventory';
import { OllamaClient } from './ollama-client';
import { OutlierDetection } from './outlier-detection';
import { OutputLengths } from './output-lengths';
import { DNS_RESOLVER, DnsDiscovery, systemResolver } from './dns-discovery.service';
import { InMemoryRegisteredBackends, REGISTERED_BACKEND_STORE } from './registered-backends';
import { RegistrationController, RegistrationTokenGuard } from './registration.controller';
import { SharedFleetSync } from './shared-fleet-sync';
import { sharedStateProvider } from './shared-state.provider';
import { SHARED_STATE, SharedState } from '../shared-state';
import { SharedRegisteredBackends } from './shared-registered-backends';

/**
 * What the balancer knows about the Ollama servers (and each model's usual output length), the
 * polling that keeps it current, and the discovery that adds and retires servers at run time (DNS
 * names, agents' registrations); with
 * REDIS_URL, the shared state of several replicas (SHARED_STATE) and the sync of cordons,
 * ejections and learned speeds between them.
 */
@Module({
  controllers: [RegistrationController],
  providers: [
    BackendRegistry,
    OllamaClient,
    ModelInventory,
    FleetEvents,
    OutlierDetection,
    OutputLengths,
    BackendPoller,
    DnsDiscovery,
    AgentRegistrations,
    RegistrationTokenGuard,
    sharedStateProvider,
    SharedFleetSync,
    // The system's resolver; tests provide their own (there is no DNS server to change there).
    { provide: DNS_RESOLVER, useValue: systemResolver },
    // One process's registrations, or with REDIS_URL one list every replica sees.
    {
      provide: REGISTERED_BACKEND_STORE,
      inject: [SHARED_STATE],
      useFactory: (shared: SharedState | null) =>
        shared ? new SharedRegisteredBackends(shared) : new InMemoryRegisteredBackends(),
    },
  ],
  exports: [BackendRegistry, OllamaClient, ModelInventory, FleetEvents, OutlierDetection, OutputLengths, SHARED_STATE],
})
export class FleetModule {}
