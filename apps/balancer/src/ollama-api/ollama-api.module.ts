import { Module } from '@nestjs/common';
import { FleetModule } from '../fleet/fleet.module';
import { FanOut } from './fan-out';
import { LoadUnload } from './load-unload';
import { MergedViews } from './merged-views';
import { ModelManagement } from './model-management';
import { Preflight } from './preflight';
import { ShowModel } from './show';

/** Ollama's fleet-wide endpoints: merged views, model management, load/unload, CORS preflight. */
@Module({
  imports: [FleetModule],
  providers: [FanOut, MergedViews, ModelManagement, LoadUnload, Preflight, ShowModel],
  exports: [MergedViews, ModelManagement, LoadUnload, Preflight, ShowModel],
})
export class OllamaApiModule {}
