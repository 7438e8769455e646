"""The cron jobs of a config, ready to run: each `[cron:NAME]` section with its Schedule."""
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .schedule import Schedule

# A fire time up to this late is on time, whatever catch_up says: a worker that is a
# little behind (restarting, Redis blip, a slow job before it) still runs it.
GRACE = 60


@dataclass(frozen=True)
class Job:
    name: str
    config: object          # config.CronJobConfig
    schedule: Schedule

    @property
    def section(self):
        return f'cron:{self.name}'

    @property
    def window(self):
        """Seconds after its fire time within which a run is still made."""
        return max(self.config.catch_up, GRACE)

    @property
    def kind(self):
        return 'callable' if self.config.callable else 'template'

    def local(self, epoch):
        """A fire time as an aware datetime in the job's timezone."""
        return datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(self.schedule.timezone))


def jobs(config):
    """{name: Job} in file order. validate_startup() has checked every section."""
    default_tz = config.cron.timezone
    return {job.name: Job(job.name, job, Schedule(job.schedule, job.timezone or default_tz))
            for job in config.cron_jobs}
