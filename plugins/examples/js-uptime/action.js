// Example custom action in JavaScript: a health gate to run after a deploy.
// It passes when a process is running and has stayed up at least
// `min_seconds`, and fails with a typed error otherwise, so a CI pipeline
// can wait on it. It shows declared params with defaults, the `processes`
// and `git` imports, console.log() as the job log, and typed errors
// (`throw { tag, val }`).
//
// Build it with componentize-js (see README.md).

import { list } from 'bosun:plugin/processes@0.1.1';
import { info } from 'bosun:plugin/git@0.1.1';

const PARAMS = [
  { name: 'process', summary: 'The process to check', required: false, default: 'web' },
  { name: 'min_seconds', summary: 'How long it must have been up', required: false, default: '0' },
];

function fail(tag, message) {
  return { tag, val: message };
}

export const action = {
  describe() {
    return { name: 'uptime', summary: 'Pass when a process has been up long enough', params: PARAMS };
  },

  run(params) {
    const given = Object.fromEntries(params);
    const value = (name) => given[name] ?? PARAMS.find((p) => p.name === name).default;
    const name = value('process');
    const min = Number(value('min_seconds'));
    if (!Number.isInteger(min) || min < 0) {
      throw fail('invalid', `param \`min_seconds\` is not a whole number: ${JSON.stringify(value('min_seconds'))}`);
    }
    const instances = list().filter((p) => p.name === name);
    if (instances.length === 0) {
      throw fail('not-found', `the project has no process called \`${name}\``);
    }
    const revision = info().revision;
    for (const p of instances) {
      const up = Math.floor(Number(p.uptimeMs) / 1000);
      console.log(`${p.name}#${p.instance}: ${p.state}, up ${up}s, ${p.restarts} restarts`);
      if (p.state !== 'running') {
        throw fail('failed', `${p.name}#${p.instance} is ${p.state}, not running`);
      }
      if (up < min) {
        throw fail('failed', `${p.name}#${p.instance} has been up ${up}s, less than ${min}s`);
      }
    }
    return JSON.stringify({ process: name, instances: instances.length, revision, min_seconds: min });
  },
};
