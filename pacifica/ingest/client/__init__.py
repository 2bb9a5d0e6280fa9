"""The upload client: build bundles from files, send them (plainly or resumably), follow the job."""
