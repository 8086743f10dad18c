"""ament_python package: `colcon build` on a vehicle, `pip install -e .` for development."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'smcvae_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
        ('share/' + package_name + '/models', glob('models/*.safetensors') + glob('models/*.json')
         + glob('models/*.onnx') + glob('models/*.md')),
    ],
    # the runtime set (requirements-runtime.txt): restore_node on onnxruntime, no torch
    install_requires=['setuptools', 'numpy', 'opencv-python-headless', 'onnxruntime'],
    extras_require={
        'test': ['pytest', 'pytest-timeout', 'onnx', 'rosbags', 'matplotlib', 'colcon-common-extensions', 'flake8',
                 'pydocstyle', 'vermin'],
        'bag': ['rosbags', 'tqdm'],
        'onnx': ['onnx'],
        'train': ['torch', 'safetensors', 'pyyaml', 'tqdm', 'tensorboard', 'matplotlib'],
    },
    zip_safe=True,
    maintainer='smcvae_ros maintainers',
    maintainer_email='smcvae-ros@example.com',
    description='Restores camera frames with failed patches using a Siamese Masked Conditional VAE (SMCVAE).',
    license='MIT',
    entry_points={
        'console_scripts': [
            'smcvae = smcvae_ros.cli:main',
            'restore_node = smcvae_ros.ros.node:main',
        ],
    },
)
