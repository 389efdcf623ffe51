import 'reflect-metadata';
import { startBalancer } from './bootstrap';

void startBalancer();
